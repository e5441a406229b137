"""The simulated world: true and measured values of every station, step and parameter.

Pure and vectorised: arrays are (station, step, parameter). Every random number is
drawn from `default_rng([seed, key, stream, block])` where `key` is a stable hash
of the station (or region) id and `block` an absolute index (of steps, or of
smooth-noise knots). So a step's values never depend on which chunk it was
generated in, nor on which other stations exist.

Sensors: `measured` is what a reference analyzer at the site would read (truth with
the instrument's gain, offset and noise); `raw` is what the device sends: the same
for reference analyzers, the inverse of the calibration registry's model for listed
low-cost sensors, times a drift factor for drifting ones (simulator/sensors.py).
A station `colocated_with` another shares its partner's truth and instrument gain
and offset (it was calibrated against it), with its own noise.

Episodes (ground truth kept per source for source apportionment):
  plume  an industrial source in `north` emits PM2.5/PM10/SO2; stations downwind get
         a Gaussian-plume share, delayed by downwind distance / wind speed.
  spill  a chemical spill at the upstream water station raises NH3-N, TP, CODMn and
         lowers DO; it travels downstream at river speed, dispersing and diluting.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from scipy.special import erf

from schemas.network import Network
from schemas.parameters import PARAMETERS
from simulator.faults import DeviceClock, FaultConfig, assign_clocks, encode_block, utc_offsets_ms
from simulator.sensors import SensorDrift, raw_output, scenario_registry

PARAMS: tuple[str, ...] = tuple(PARAMETERS)
P = {p: i for i, p in enumerate(PARAMS)}
SOURCES: tuple[str, ...] = ("plume", "spill")
DEFAULT_START_MS = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000
DEFAULT_CALIBRATION_FILE = Path(__file__).resolve().parents[1] / "config" / "calibration.yaml"

# Random streams: one id per purpose so adding a draw never shifts another.
_STATIC, _NOISE, _SLOW, _GW, _WIND = 1, 2, 3, 4, 5
_STEP_BLOCK = 1440  # steps per random block
_KNOT_BLOCK = 256  # smooth-noise knots per random block
_SQRT2 = float(np.sqrt(2.0))


@dataclass(frozen=True)
class ScenarioConfig:
    """Everything that determines a run; times of episodes are relative to `start_ms`."""

    seed: int = 7
    start_ms: int = DEFAULT_START_MS
    step_s: int = 60
    plume_start_s: float = 40 * 60
    plume_duration_s: float = 3 * 3600
    plume_strength: float = 1.0  # 0 disables the plume
    plume_source: tuple[float, float] = (49.445, 17.455)  # lat, lon: the chemical works at Přerov (north)
    spill_start_s: float = 40 * 60
    spill_duration_s: float = 3 * 3600
    spill_strength: float = 1.0  # 0 disables the spill
    spill_station: str | None = None  # None: the most upstream water station
    river_speed_kmh: float = 3.0
    episode_wind_from_deg: float = 0.0  # northerly during the plume: carries it into `central`
    episode_wind_speed_ms: float = 4.0
    gw_delay_s: tuple[float, float] = (0.2, 2.5)  # device -> gateway transport delay
    faults: FaultConfig = field(default_factory=FaultConfig)
    # Sensors listed here send raw values its models map back to `measured`; None: every device sends `measured`.
    calibration_file: Path | None = DEFAULT_CALIBRATION_FILE
    drift: tuple[SensorDrift, ...] = ()  # drifting sensors (raw output only); a drift's start_ms None = this start_ms

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError("seed must be >= 0")
        if self.step_s <= 0 or int(self.step_s) != self.step_s:
            raise ValueError(f"step_s must be a positive whole number of seconds, got {self.step_s}")
        if self.plume_duration_s <= 0 or self.spill_duration_s <= 0 or self.river_speed_kmh <= 0:
            raise ValueError("episode durations and river speed must be > 0")
        if not 0 <= self.gw_delay_s[0] <= self.gw_delay_s[1]:
            raise ValueError(f"gw_delay_s must be (low, high) with 0 <= low <= high, got {self.gw_delay_s}")
        keys = [d.key for d in self.drift]
        if len(set(keys)) < len(keys):
            raise ValueError(f"drift lists a sensor twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}")

    def time_ms(self, step: int | np.ndarray) -> int | np.ndarray:
        return self.start_ms + np.asarray(step, dtype=np.int64) * (int(self.step_s) * 1000)

    def steps_between(self, t0_ms: int, t1_ms: int) -> range:
        """Steps whose time lies in [t0_ms, t1_ms)."""
        ms = int(self.step_s) * 1000
        first = max(0, -((self.start_ms - t0_ms) // ms))  # ceil((t0 - start) / ms)
        last = max(first, -((self.start_ms - t1_ms) // ms))
        return range(first, last)


@dataclass(frozen=True, eq=False)
class ScenarioBlock:
    """Values of a block of consecutive steps. Arrays are (station, step, parameter)."""

    step0: int
    times_ms: np.ndarray  # (T,) int64, true time of each step
    station_ids: tuple[str, ...]  # sorted
    params: tuple[str, ...]
    measures: np.ndarray  # (S, P) bool: the station measures the parameter
    true: np.ndarray  # NaN where not measured
    measured: np.ndarray  # true * gain + offset + noise, clipped: what a reference analyzer reads; NaN where not measured
    raw: np.ndarray  # what the device sends (before rounding): calibration inverse and drift applied; NaN where not measured
    contributions: dict[str, np.ndarray]  # source -> amount it added to `true` (0 where none)
    gw_delay_ms: np.ndarray  # (S, T) int64, device -> gateway delay

    def index(self, station_id: str) -> int:
        return self.station_ids.index(station_id)

    def series(self, station_id: str, param: str, kind: str = "measured") -> np.ndarray:
        arr = self.contributions[kind] if kind in self.contributions else getattr(self, kind)
        return arr[self.index(station_id), :, P[param]]


# (low, high) of each station's baseline level, drawn once per station. For wind,
# temperature and humidity they are site effects: exposure factor, vane offset, offsets;
# for PM10 it is the PM10/PM2.5 ratio (PM10 contains PM2.5).
_BASE: dict[str, tuple[float, float]] = {
    "pm25": (14, 24), "pm10": (1.35, 1.8), "no2": (18, 34), "so2": (4, 10), "o3": (28, 42), "co": (0.4, 0.8),
    "wind_speed": (0.75, 1.2), "wind_dir": (-8, 8), "temp": (-0.5, 0.5), "rh": (-3, 3),
    "ph": (7.5, 8.0), "do": (9.5, 11.0), "codmn": (2.8, 4.8), "nh3n": (0.35, 0.6), "tp": (0.08, 0.16), "water_temp": (6.0, 8.0),
}  # fmt: skip

# Sensor error model: gain range (log-uniform), offset sd, noise sd = rel * |true| + abs.
_SENSOR: dict[str, tuple[float, float, float, float, float]] = {
    "pm25": (0.8, 1.25, 1.5, 0.04, 1.0), "pm10": (0.8, 1.25, 2.0, 0.04, 1.5), "no2": (0.8, 1.25, 2.0, 0.05, 1.0),
    "so2": (0.8, 1.25, 1.0, 0.05, 0.5), "o3": (0.8, 1.25, 2.0, 0.04, 1.0), "co": (0.8, 1.25, 0.03, 0.04, 0.02),
    "wind_speed": (0.95, 1.05, 0.1, 0.05, 0.15), "wind_dir": (1.0, 1.0, 4.0, 0.0, 6.0), "temp": (0.99, 1.01, 0.3, 0.0, 0.1),
    "rh": (0.97, 1.03, 1.5, 0.0, 0.8), "ph": (1.0, 1.0, 0.05, 0.0, 0.02), "do": (0.9, 1.1, 0.2, 0.02, 0.05),
    "codmn": (0.8, 1.25, 0.2, 0.03, 0.05), "nh3n": (0.8, 1.25, 0.02, 0.03, 0.01), "tp": (0.8, 1.25, 0.005, 0.03, 0.003),
    "water_temp": (1.0, 1.0, 0.2, 0.0, 0.05),
}  # fmt: skip

# Episode amounts: plume per unit of the near-field shape, spill at the source section.
_PLUME = {"pm25": 480.0, "pm10": 650.0, "so2": 850.0}
_SPILL = {"nh3n": 4.5, "tp": 0.9, "codmn": 6.0, "do": -2.5}
_DILUTION_KM = 80.0  # tributaries and decay: e-folding distance of the spill's concentration


def _key(name: str) -> int:
    return zlib.crc32(name.encode())


def _draws(seed: int, key: int, stream: int, idx: np.ndarray, width: int, block: int, uniform: bool = False) -> np.ndarray:
    """Random numbers for absolute indices `idx` (>= 0): one generator per aligned block of indices."""
    out = np.empty((idx.size, width))
    blocks = idx // block
    for b in np.unique(blocks):
        rng = np.random.default_rng([seed, key, stream, int(b)])
        vals = rng.random((block, width)) if uniform else rng.standard_normal((block, width))
        sel = blocks == b
        out[sel] = vals[idx[sel] - b * block]
    return out


def _smooth(seed: int, key: int, stream: int, t_h: np.ndarray, spacing_h: float, width: int) -> np.ndarray:
    """(T, width) unit-variance-ish noise varying slowly: cosine interpolation of N(0,1) knots."""
    u = t_h / spacing_h
    i0 = np.floor(u).astype(np.int64)
    w = (0.5 - 0.5 * np.cos(np.pi * (u - i0)))[:, None]
    k0 = _draws(seed, key, stream, i0, width, _KNOT_BLOCK)
    k1 = _draws(seed, key, stream, i0 + 1, width, _KNOT_BLOCK)
    return k0 * (1 - w) + k1 * w


def _plateau(tau_s: np.ndarray, duration_s: float, sigma_s: np.ndarray | float) -> np.ndarray:
    """A box of `duration_s` starting at tau=0, smoothed by a Gaussian of `sigma_s` (peak <= 1)."""
    a = _SQRT2 * sigma_s
    return 0.5 * (erf(tau_s / a) - erf((tau_s - duration_s) / a))


def _ramped_box(tau_s: np.ndarray, duration_s: float, rise_s: np.ndarray | float) -> np.ndarray:
    """A box of `duration_s` convolved with a `rise_s`-wide kernel: exactly 0 before tau=0, area = duration."""

    def smoothstep(x: np.ndarray) -> np.ndarray:
        x = np.clip(x, 0.0, 1.0)
        return x * x * (3.0 - 2.0 * x)

    return smoothstep(tau_s / rise_s) - smoothstep((tau_s - duration_s) / rise_s)


def _bump(h: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (h - centre + 12.0) % 24.0 - 12.0  # circular distance on the clock
    return np.exp(-0.5 * (d / width) ** 2)


def _wind(cfg: ScenarioConfig, t_h: np.ndarray, rel_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Synoptic wind (from-direction deg, speed m/s) per step; northerly around the plume episode."""
    s = _smooth(cfg.seed, 0, _WIND, t_h, 4.0, 2)
    free_dir, free_speed = 320.0 + 40.0 * s[:, 0], 3.2 * np.exp(0.25 * s[:, 1])
    epi_dir, epi_speed = cfg.episode_wind_from_deg + 6.0 * s[:, 0], cfg.episode_wind_speed_ms * np.exp(0.08 * s[:, 1])
    # The episode regime covers the emission plus time for the plume to cross the network.
    w = _plateau(rel_s - (cfg.plume_start_s - 3600), cfg.plume_duration_s + 4 * 3600, 1800.0)
    diff = (epi_dir - free_dir + 180.0) % 360.0 - 180.0
    return (free_dir + w * diff) % 360.0, free_speed + w * (epi_speed - free_speed)


def _plume_shape(cfg: ScenarioConfig, lat: np.ndarray, lon: np.ndarray, wind_dir: np.ndarray, wind_speed: np.ndarray, rel_s: np.ndarray) -> np.ndarray:
    """(S, T) plume concentration per unit emission, already delayed by the transport time."""
    lat0, lon0 = cfg.plume_source
    east = ((lon - lon0) * 111.32 * np.cos(np.radians(lat0)))[:, None]
    north = ((lat - lat0) * 110.57)[:, None]
    to = np.radians(wind_dir + 180.0)[None, :]
    x = east * np.sin(to) + north * np.cos(to)  # downwind km
    y = east * np.cos(to) - north * np.sin(to)  # crosswind km
    xp = np.maximum(x, 0.0)
    sigma_y = 0.4 + 0.22 * xp
    shape = (2.0 / (xp + 2.0)) ** 0.8 * np.exp(-0.5 * (y / sigma_y) ** 2) * 0.5 * (1 + np.tanh(x / 0.4))
    lag_s = xp * 1000.0 / wind_speed[None, :]
    return shape * _ramped_box(rel_s[None, :] - cfg.plume_start_s - lag_s, cfg.plume_duration_s, 600.0)


def _spill_shape(cfg: ScenarioConfig, network: Network, ids: tuple[str, ...], rel_s: np.ndarray) -> np.ndarray:
    """(S, T) spill concentration relative to the source section: delayed, dispersed, diluted."""
    water = [network.stations[s] for s in ids if network.stations[s].medium == "water"]
    if not water:
        return np.zeros((len(ids), rel_s.size))
    src = network.stations[cfg.spill_station] if cfg.spill_station else min(water, key=lambda s: s.river_km or 0.0)
    if src.river_km is None:
        raise ValueError(f"spill station {src.id!r} is not a water station")
    km = np.array([network.stations[s].river_km if network.stations[s].river_km is not None else np.nan for s in ids])
    d = km - src.river_km
    downstream = np.nan_to_num(d, nan=-1.0) >= 0
    d = np.where(downstream, d, 0.0)[:, None]
    # Longitudinal dispersion spreads the pulse by ~sqrt(distance) around the advective arrival
    # (the front runs ahead of it); at the spill section itself nothing precedes the spill.
    rise0 = 600.0
    rise = rise0 + 1800.0 * np.sqrt(d)
    tau = rel_s[None, :] - cfg.spill_start_s - d / cfg.river_speed_kmh * 3600.0 + (rise - rise0) / 2
    return np.where(downstream[:, None], np.exp(-d / _DILUTION_KM) * _ramped_box(tau, cfg.spill_duration_s, rise), 0.0)


def check_drift(network: Network, config: ScenarioConfig) -> None:
    """ValueError when a drifting sensor is not in the network."""
    for d in config.drift:
        st = network.stations.get(d.station_id)
        if st is None:
            raise ValueError(f"drift names unknown station {d.station_id!r}")
        if d.parameter not in st.parameters:
            raise ValueError(f"drift of {d.key}: station {d.station_id} does not measure {d.parameter!r} (measures {', '.join(st.parameters)})")


def _truth_source(network: Network, ids: tuple[str, ...]) -> np.ndarray:
    """(S,) index of the station whose truth each station shares: its co-location partner, else itself."""
    out = np.arange(len(ids))
    for i, sid in enumerate(ids):
        partner = network.stations[sid].colocated_with
        if partner is not None:
            if partner not in ids:
                raise ValueError(f"station {sid} is co-located with {partner!r}, which is not in the network")
            out[i] = ids.index(partner)
    return out


def simulate(network: Network, config: ScenarioConfig, step0: int, n_steps: int) -> ScenarioBlock:
    """True, measured and raw values of every station for steps [step0, step0 + n_steps)."""
    if step0 < 0 or n_steps < 0:
        raise ValueError("step0 and n_steps must be >= 0")
    cfg = config
    check_drift(network, cfg)
    ids = tuple(sorted(network.stations))
    share = _truth_source(network, ids)
    sts = [network.stations[s] for s in ids]
    n_s, n_t, n_p = len(ids), n_steps, len(PARAMS)
    k = np.arange(step0, step0 + n_steps, dtype=np.int64)
    t_ms = np.asarray(cfg.time_ms(k), dtype=np.int64)
    t_h = t_ms / 3_600_000.0
    rel_s = (k * int(cfg.step_s)).astype(np.float64)
    lat = np.array([s.lat for s in sts])
    lon = np.array([s.lon for s in sts])
    measures = np.array([[p in s.parameters for p in PARAMS] for s in sts], dtype=bool)

    # Per-station constants: baseline levels / site effects, sensor gain and offset.
    lo = np.array([_BASE[p][0] for p in PARAMS])
    hi = np.array([_BASE[p][1] for p in PARAMS])
    sensor = np.array([_SENSOR[p] for p in PARAMS])
    base, gain, offset = np.empty((n_s, n_p)), np.empty((n_s, n_p)), np.empty((n_s, n_p))
    noise = np.empty((n_s, n_t, n_p))
    slow_local = np.empty((n_s, n_t, n_p))
    gw_delay = np.empty((n_s, n_t))
    for i, sid in enumerate(ids):
        key = _key(sid)
        rng = np.random.default_rng([cfg.seed, key, _STATIC])
        base[i] = lo + (hi - lo) * rng.random(n_p)
        gain[i] = np.exp(np.log(sensor[:, 0]) + (np.log(sensor[:, 1]) - np.log(sensor[:, 0])) * rng.random(n_p))
        offset[i] = sensor[:, 2] * rng.standard_normal(n_p)
        noise[i] = _draws(cfg.seed, key, _NOISE, k, n_p, _STEP_BLOCK)
        slow_local[i] = _smooth(cfg.seed, key, _SLOW, t_h, 3.0, n_p)
        gw_delay[i] = _draws(cfg.seed, key, _GW, k, 1, _STEP_BLOCK, uniform=True)[:, 0]
    # A co-located sensor was calibrated against its partner: once calibrated it reads what
    # the partner reads, up to its own noise (so a drift stage sees no bias until it drifts).
    gain, offset = gain[share], offset[share]
    regions = sorted(network.regions)
    region_slow = np.stack([_smooth(cfg.seed, _key("region:" + r), _SLOW, t_h, 6.0, n_p) for r in regions])
    slow_region = region_slow[[regions.index(s.region) for s in sts]]  # (S, T, P)
    slow = np.tanh(0.7 * slow_region + 0.5 * slow_local)  # bounded: keeps baselines in their band

    # Clock hour drives traffic; solar hour drives temperature, ozone and aquatic cycles.
    zone_off_h = {z: utc_offsets_ms(z, t_ms) / 3_600_000.0 for z in {s.timezone for s in sts}}
    clock_h = np.stack([(t_h + zone_off_h[s.timezone]) % 24.0 for s in sts])
    solar_h = (t_h[None, :] + lon[:, None] / 15.0) % 24.0

    def b(p: str) -> np.ndarray:
        return base[:, P[p]][:, None]

    def sl(p: str) -> np.ndarray:
        return slow[:, :, P[p]]

    pm_profile = 1.0 + 0.22 * np.cos(2 * np.pi * (clock_h - 3.0) / 24.0) + 0.18 * _bump(clock_h, 8.0, 1.2) + 0.10 * _bump(clock_h, 18.5, 1.5)
    rush = 1.0 + 0.45 * _bump(clock_h, 8.0, 1.0) + 0.35 * _bump(clock_h, 18.0, 1.5)
    sun = _bump(solar_h, 14.5, 2.5)
    wind_dir, wind_speed = _wind(cfg, t_h, rel_s)
    temp_mean = (4.0 + (49.3 - lat) * 1.5)[:, None] + b("temp") + 2.0 * slow_region[:, :, P["temp"]]

    true = np.empty((n_s, n_t, n_p))
    true[:, :, P["pm25"]] = b("pm25") * pm_profile * np.exp(0.12 * sl("pm25"))
    true[:, :, P["pm10"]] = b("pm10") * true[:, :, P["pm25"]]
    true[:, :, P["no2"]] = b("no2") * (rush - 0.2 * sun) * np.exp(0.15 * sl("no2"))
    true[:, :, P["so2"]] = b("so2") * (1.0 + 0.1 * np.cos(2 * np.pi * (clock_h - 4.0) / 24.0)) * np.exp(0.15 * sl("so2"))
    true[:, :, P["o3"]] = b("o3") * (0.45 + 0.9 * sun) * np.exp(0.1 * sl("o3"))
    true[:, :, P["co"]] = b("co") * pm_profile * np.exp(0.1 * sl("co"))
    true[:, :, P["wind_speed"]] = b("wind_speed") * wind_speed[None, :] * np.exp(0.1 * sl("wind_speed"))
    true[:, :, P["wind_dir"]] = (wind_dir[None, :] + b("wind_dir") + 5.0 * slow_region[:, :, P["wind_dir"]]) % 360.0
    true[:, :, P["temp"]] = temp_mean + 3.5 * np.cos(2 * np.pi * (solar_h - 14.5) / 24.0)
    true[:, :, P["rh"]] = 86.0 + b("rh") - 3.0 * (true[:, :, P["temp"]] - temp_mean) + 5.0 * sl("rh")
    true[:, :, P["ph"]] = b("ph") + 0.08 * np.cos(2 * np.pi * (solar_h - 15.0) / 24.0) + 0.03 * sl("ph")
    true[:, :, P["do"]] = b("do") + 0.35 * np.cos(2 * np.pi * (solar_h - 15.0) / 24.0) + 0.2 * sl("do")
    true[:, :, P["codmn"]] = b("codmn") * np.exp(0.1 * sl("codmn"))
    true[:, :, P["nh3n"]] = b("nh3n") * np.exp(0.12 * sl("nh3n"))
    true[:, :, P["tp"]] = b("tp") * np.exp(0.12 * sl("tp"))
    true[:, :, P["water_temp"]] = b("water_temp") + 0.3 * np.cos(2 * np.pi * (solar_h - 16.0) / 24.0) + 0.4 * slow_region[:, :, P["water_temp"]]

    # Co-located stations breathe the same air as their partner: same truth, episodes included.
    true = true[share]
    contributions = {src: np.zeros((n_s, n_t, n_p)) for src in SOURCES}
    plume = cfg.plume_strength * _plume_shape(cfg, lat, lon, wind_dir, wind_speed, rel_s)[share]
    spill = cfg.spill_strength * _spill_shape(cfg, network, ids, rel_s)[share]
    for p, amount in _PLUME.items():
        contributions["plume"][:, :, P[p]] = amount * plume * measures[:, P[p]][:, None]
    for p, amount in _SPILL.items():
        contributions["spill"][:, :, P[p]] = amount * spill * measures[:, P[p]][:, None]
    for c in contributions.values():
        true += c

    low = np.array([PARAMETERS[p].low for p in PARAMS])
    high = np.array([PARAMETERS[p].high for p in PARAMS])
    true = np.clip(true, low, high)
    sd = sensor[:, 3] * np.abs(true) + sensor[:, 4]
    measured = np.clip(true * gain[:, None, :] + offset[:, None, :] + noise * sd, low, high)
    wd = P["wind_dir"]  # a direction wraps around instead of being clipped
    measured[:, :, wd] = (true[:, :, wd] + offset[:, None, wd] + noise[:, :, wd] * sd[:, :, wd]) % 360.0

    hide = ~measures[:, None, :]
    true[np.broadcast_to(hide, true.shape)] = np.nan
    measured[np.broadcast_to(hide, measured.shape)] = np.nan
    raw = raw_output(measured, measures, ids, PARAMS, t_ms, scenario_registry(cfg.calibration_file), cfg.drift, cfg.start_ms)
    d0, d1 = cfg.gw_delay_s
    gw_ms = np.round((d0 + (d1 - d0) * gw_delay) * 1000.0).astype(np.int64)
    return ScenarioBlock(step0, t_ms, ids, PARAMS, measures, true, measured, raw, contributions, gw_ms)


def simulate_range(network: Network, config: ScenarioConfig, t0_ms: int, t1_ms: int) -> ScenarioBlock:
    """Steps whose true time lies in [t0_ms, t1_ms)."""
    steps = config.steps_between(t0_ms, t1_ms)
    return simulate(network, config, steps.start, len(steps))


def subnetwork(network: Network, station_ids: Iterable[str]) -> Network:
    """The network reduced to these stations and their co-location partners. Simulating it
    gives those stations the same values as the whole network (random draws are keyed per
    station), at a fraction of the cost. Water stations' spill needs the river's first
    section: keep it in `station_ids` for spill values."""
    keep = set(station_ids)
    unknown = sorted(keep - set(network.stations))
    if unknown:
        raise ValueError(f"unknown stations {unknown}")
    keep |= {network.stations[s].colocated_with for s in keep} - {None}  # type: ignore[arg-type]
    stations = {sid: st for sid, st in network.stations.items() if sid in keep}
    return replace(network, stations=stations)


@dataclass(frozen=True, eq=False)
class PairSeries:
    """A sensor and its reference side by side, one value per step (NaN-free unless not measured)."""

    times_ms: np.ndarray  # (T,) int64
    true: np.ndarray  # the sensor site's truth
    sensor_raw: np.ndarray  # what the sensor sends (calibration inverse, drift), before 3-digit rounding
    sensor_measured: np.ndarray  # what its calibrated output would be without drift (the registry model of sensor_raw / drift)
    reference: np.ndarray  # the reference's measured values (what it sends unless the registry lists it)
    covariates: dict[str, np.ndarray]  # the sensor station's own measured rh and temp (unrounded), where it has them

    def hourly(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hour start ms, mean) per clock hour of `values` (aligned with times_ms), the input
        of a drift fit on hourly means; a partial hour at either end is the mean of its steps."""
        hour = self.times_ms // HOUR_MS
        starts, idx = np.unique(hour, return_inverse=True)
        sums, counts = np.bincount(idx, weights=values), np.bincount(idx)
        return starts * HOUR_MS, sums / counts


def pair_series(network: Network, config: ScenarioConfig, station_id: str, parameter: str, t0_ms: int, t1_ms: int, reference_id: str | None = None) -> PairSeries:
    """Series of a sensor and a reference (default: the station it is co-located with) over
    [t0_ms, t1_ms), simulating only the two stations: two weeks of minutes take well under a second."""
    check_drift(network, config)  # against the whole network: the sub-network lacks the others
    ref = reference_id or network.stations[station_id].colocated_with
    if ref is None:
        raise ValueError(f"station {station_id} is not co-located with any station: give reference_id")
    sub = subnetwork(network, (station_id, ref))
    cfg = replace(config, drift=tuple(d for d in config.drift if d.station_id in sub.stations))
    blk = simulate_range(sub, cfg, t0_ms, t1_ms)
    cov = {c: blk.series(station_id, c) for c in ("rh", "temp") if c in network.stations[station_id].parameters}
    return PairSeries(
        blk.times_ms,
        blk.series(station_id, parameter, "true"),
        blk.series(station_id, parameter, "raw"),
        blk.series(station_id, parameter),
        blk.series(ref, parameter),
        cov,
    )


def device_clocks(network: Network, config: ScenarioConfig) -> dict[str, DeviceClock]:
    """Clock behaviour of every station (faulty or not) for this config."""
    return assign_clocks(network, config.seed, config.faults)


def faulty_stations(network: Network, config: ScenarioConfig) -> dict[str, str]:
    """station id -> human description of its clock fault, for the stations that have one."""
    return {sid: c.describe(network.stations[sid].timezone) for sid, c in device_clocks(network, config).items() if c.faulty}


def device_messages(network: Network, config: ScenarioConfig, step0: int, n_steps: int) -> list[tuple[str, bytes]]:
    """(MQTT topic, payload bytes) of steps [step0, step0 + n_steps), sorted by step then station id."""
    block = simulate(network, config, step0, n_steps)
    return [(topic, payload) for _, topic, payload in encode_block(network, block, device_clocks(network, config))]


def iter_device_steps(network: Network, config: ScenarioConfig, step0: int = 0, n_steps: int | None = None, chunk: int = 60) -> Iterator[tuple[int, list[tuple[str, bytes]]]]:
    """(step, [(topic, payload), ...]) step by step, simulated `chunk` steps at a time; endless if n_steps is None."""
    clocks = device_clocks(network, config)
    end = None if n_steps is None else step0 + n_steps
    start = step0
    while end is None or start < end:
        n = chunk if end is None else min(chunk, end - start)
        by_step: dict[int, list[tuple[str, bytes]]] = {}
        for step, topic, payload in encode_block(network, simulate(network, config, start, n), clocks):
            by_step.setdefault(step, []).append((topic, payload))
        yield from by_step.items()
        start += n
