"""Station-network simulator: a deterministic world of air and water stations with
pollution episodes and faulty device clocks, published over MQTT like real gateways.

scenario  true/measured/raw values and episode ground truth (pure numpy)
sensors   raw device output: calibration registry inverse and sensor drift
inverse   inverses of the calibration models
faults    device clock faults and payload encoding
publisher one MQTT client per station, paced by rate or simulation speed
cli       the `simulate` command
"""

from simulator.faults import DeviceClock, FaultConfig
from simulator.scenario import (
    SOURCES,
    PairSeries,
    ScenarioBlock,
    ScenarioConfig,
    device_clocks,
    device_messages,
    faulty_stations,
    iter_device_steps,
    pair_series,
    simulate,
    simulate_range,
    subnetwork,
)
from simulator.sensors import SensorDrift, parse_drift

__all__ = [
    "SOURCES",
    "DeviceClock",
    "FaultConfig",
    "PairSeries",
    "ScenarioBlock",
    "ScenarioConfig",
    "SensorDrift",
    "device_clocks",
    "device_messages",
    "faulty_stations",
    "iter_device_steps",
    "pair_series",
    "parse_drift",
    "simulate",
    "simulate_range",
    "subnetwork",
]
