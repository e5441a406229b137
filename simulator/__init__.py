"""Station-network simulator: a deterministic world of air and water stations with
pollution episodes and faulty device clocks, published over MQTT like real gateways.

scenario  true/measured values and episode ground truth (pure numpy)
faults    device clock faults and payload encoding
publisher one MQTT client per station, paced by rate or simulation speed
cli       the `simulate` command
"""

from simulator.faults import DeviceClock, FaultConfig
from simulator.scenario import (
    SOURCES,
    ScenarioBlock,
    ScenarioConfig,
    device_clocks,
    device_messages,
    faulty_stations,
    iter_device_steps,
    simulate,
    simulate_range,
)

__all__ = [
    "SOURCES",
    "DeviceClock",
    "FaultConfig",
    "ScenarioBlock",
    "ScenarioConfig",
    "device_clocks",
    "device_messages",
    "faulty_stations",
    "iter_device_steps",
    "simulate",
    "simulate_range",
]
