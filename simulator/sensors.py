"""What a device sends, given what a reference analyzer would read at its site.

`measured` (scenario.py) is the reading of a reference-grade analyzer: truth with
the instrument's gain, offset and noise. Low-cost sensors listed in the calibration
registry (config/calibration.yaml) do not send that: they send a raw signal that
the registry's model, in effect at the reading's event time, maps back to it. So
the simulator publishes raw = inverse(model)(measured) for them, with the model's
covariates (rh, temp) taken from the station's own published readings, and the
pipeline's calibration recovers `measured`.

Drift: a listed (or any) sensor may lose its calibration over time. Its raw output
is multiplied by 1 + gain_change * clamp((t - start) / over_days, 0, 1), after the
inverse, so the registry's model no longer gives `measured` back and a drift stage
comparing it with a co-located reference sees the gain grow.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from calibration.registry import Registry, SensorModels, load_registry
from schemas.parameters import PARAMETERS
from simulator.faults import round_sig3
from simulator.inverse import inverse

DAY_MS = 86_400_000


@dataclass(frozen=True)
class SensorDrift:
    """A sensor's gain drifting linearly by `gain_change` (0.2 = +20%) over `over_days` from `start_ms`."""

    station_id: str
    parameter: str
    gain_change: float
    over_days: float
    start_ms: int | None = None  # None: the scenario's start

    def __post_init__(self) -> None:
        if self.parameter not in PARAMETERS:
            raise ValueError(f"drift of {self.station_id}/{self.parameter}: unknown parameter {self.parameter!r}")
        if not np.isfinite(self.gain_change) or self.gain_change <= -1.0:
            raise ValueError(f"drift of {self.key}: gain_change must be > -1 (a sensor's gain stays positive), got {self.gain_change}")
        if not np.isfinite(self.over_days) or self.over_days <= 0:
            raise ValueError(f"drift of {self.key}: over_days must be > 0, got {self.over_days}")

    @property
    def key(self) -> str:
        return f"{self.station_id}/{self.parameter}"

    def factor(self, times_ms: np.ndarray, default_start_ms: int) -> np.ndarray:
        """1 + gain_change * clamp((t - start) / over_days, 0, 1) at each time."""
        start = default_start_ms if self.start_ms is None else self.start_ms
        progress = np.clip((np.asarray(times_ms, dtype=np.float64) - start) / (self.over_days * DAY_MS), 0.0, 1.0)
        return 1.0 + self.gain_change * progress


def parse_time_ms(text: str) -> int:
    """Epoch ms (all digits) or ISO-8601 (naive = UTC, never this machine's zone) -> epoch ms."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    t = datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def parse_drift(spec: str) -> SensorDrift:
    """'STATION/PARAM:GAIN:DAYS[:START]', e.g. 'c-a11/pm25:0.2:14:2026-11-22T00:00:00Z'.

    START (epoch ms or ISO-8601) may itself contain colons: everything after the
    third colon is START. ValueError with the reason on a malformed spec.
    """
    parts = spec.split(":", 3)
    if len(parts) < 3 or "/" not in parts[0]:
        raise ValueError(f"{spec!r} is not STATION/PARAM:GAIN:DAYS[:START], e.g. c-a11/pm25:0.2:14")
    station_id, _, parameter = parts[0].partition("/")
    try:
        gain, days = float(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"{spec!r}: GAIN and DAYS must be numbers, e.g. c-a11/pm25:0.2:14") from None
    try:
        start = parse_time_ms(parts[3]) if len(parts) == 4 else None
    except ValueError:
        raise ValueError(f"{spec!r}: START must be epoch ms or ISO-8601, e.g. 2026-11-22T00:00:00Z") from None
    return SensorDrift(station_id, parameter, gain, days, start)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Registry:
    return load_registry(path)


def scenario_registry(path: str | Path | None) -> Registry | None:
    """The registry at `path` (None: none), parsed once per file version: the simulator
    asks for it at every chunk. Raises schemas.errors.ConfigError for an invalid file."""
    if path is None:
        return None
    p = Path(path).resolve()
    return _load_cached(str(p), p.stat().st_mtime_ns)


def _invert_sensor(raw: np.ndarray, measured: np.ndarray, times_ms: np.ndarray, i: int, col: dict[str, int], sensor: SensorModels) -> None:
    """Replace row i's `sensor.parameter` in `raw` by the inverse of the version in effect at each time."""
    p = col[sensor.parameter]
    spec = PARAMETERS[sensor.parameter]
    ends = [v.effective_from for v in sensor.versions[1:]] + [np.iinfo(np.int64).max]
    for version, end in zip(sensor.versions, ends):
        sel = (times_ms >= version.effective_from) & (times_ms < end)
        if not sel.any():
            continue
        # Covariates as the device publishes them (3 significant digits): the pipeline
        # calibrates with those, so the round trip is exact up to the raw value's own rounding.
        cov = {name: round_sig3(measured[i, sel, col[name]]) for name in version.model.covariates if name in col}
        x = inverse(version.model, measured[i, sel, p], cov, (spec.low, spec.high))
        # No inverse (a covariate the station lacks): send the reading as it is; the
        # pipeline flags it calibration missing either way.
        raw[i, sel, p] = np.where(np.isfinite(x), x, measured[i, sel, p])


def raw_output(
    measured: np.ndarray,
    measures: np.ndarray,
    station_ids: tuple[str, ...],
    params: tuple[str, ...],
    times_ms: np.ndarray,
    registry: Registry | None,
    drift: tuple[SensorDrift, ...],
    default_start_ms: int,
) -> np.ndarray:
    """(S, T, P) values the devices send: inverse of the registry model for listed
    sensors, times the drift factor for drifting ones, clipped to the plausible range.
    `measures` (S, P) says which sensors exist; registry sensors and drifts of other
    stations (outside a sub-network) are ignored."""
    raw = measured.copy()
    row = {sid: i for i, sid in enumerate(station_ids)}
    col = {p: j for j, p in enumerate(params)}
    for sensor in registry.sensors.values() if registry is not None else ():
        i = row.get(sensor.station_id)
        if i is not None and measures[i, col[sensor.parameter]]:
            _invert_sensor(raw, measured, times_ms, i, col, sensor)
    for d in drift:
        if d.station_id in row and measures[row[d.station_id], col[d.parameter]]:
            raw[row[d.station_id], :, col[d.parameter]] *= d.factor(times_ms, default_start_ms)
    low = np.array([PARAMETERS[p].low for p in params])
    high = np.array([PARAMETERS[p].high for p in params])
    out = np.clip(raw, low, high)
    if "wind_dir" in col:  # a direction wraps around instead of being clipped
        out[:, :, col["wind_dir"]] = raw[:, :, col["wind_dir"]] % 360.0
    return out
