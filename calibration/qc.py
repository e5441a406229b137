"""Quality-control flags: a bitmask stored with every value, and vectorised tests.

Each test takes arrays ordered by event time within each series (one sensor), and
an optional `series` array (equal ids contiguous) so one call covers a batch of
many sensors; windows never reach across series. Every test is causal: a reading
is judged only on itself and the readings before it, so the flags a stream
assigns are final and a replay assigns the same ones.

Flagged readings are kept and stored; `excluded` says which of them indices must
leave out (HJ 630 / HJ 818-style validity: instrument not in normal operation,
impossible or suspect values).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike, NDArray

from calibration.units import conversion_factor
from schemas.parameters import PARAMETERS

BoolArray = NDArray[np.bool_]


class QcFlag(IntFlag):
    RANGE = 1  # outside the plausible range of the parameter (QC_LIMITS)
    SPIKE = 2  # robust z-score against the preceding window beyond the limit
    FLATLINE = 4  # the same value N times in a row: stuck sensor
    RATE = 8  # changed faster than the parameter can (per minute)
    STATUS = 16  # the device's HJ 212 flag is not N (normal) or S (manually set)
    CALIBRATION_MISSING = 32  # a listed sensor with no model in effect, or its covariates missing


# Which flags leave a value out of indices. RATE alone does not: a plume arriving can
# change a concentration fast and truly; a wrong value that jumps is also a SPIKE.
EXCLUDING = QcFlag.RANGE | QcFlag.SPIKE | QcFlag.FLATLINE | QcFlag.STATUS | QcFlag.CALIBRATION_MISSING
# HJ 212 per-value flags (STANDARDS.md): N normal, F stopped, M maintenance, S manual,
# D fault, C calibrating, T over range, B communication fault; only N and S count.
VALID_STATUS = ("N", "S")


def flag_names(mask: int) -> list[str]:
    """Names of the set bits, in bit order (e.g. ['RANGE', 'STATUS'])."""
    return [f.name for f in QcFlag if f.name and mask & f]


def excluded(flags: ArrayLike, exclude: QcFlag = EXCLUDING) -> BoolArray:
    """True where a value must not enter an index."""
    return (np.asarray(flags, dtype=np.int64) & int(exclude)) != 0


@dataclass(frozen=True)
class QcLimits:
    low: float
    high: float
    max_rate_per_min: float  # inf: not tested
    flat_n: int  # this many equal values in a row is a flat line; 0: not tested
    spike_window: int = 30  # readings (ending at the one judged) the median and quartiles come from
    spike_z: float = 6.0  # |x - median| / (IQR/1.349) beyond this is a spike
    spike_min_scale: float = 1.0  # floor on the robust scale, in the parameter's unit (quantised sensors have IQR 0)
    source: str = ""


def _gas_high(species: str, ppb: float) -> float:
    """An analyzer's range limit in ppb as the pipeline's unit (ug/m3; CO mg/m3) at the GB 3095 reference state."""
    unit = PARAMETERS[species].unit
    return round(ppb * conversion_factor(species, "ppb", unit, "gb3095-2018"), 1)


_HJ654 = "HJ 654-2013 gas analyzer measuring range (SO2/NO2/O3 0-500 nmol/mol, CO 0-50 umol/mol; verify)"
_HJ653 = "HJ 653-2013 PM monitor measuring range 0-1000 ug/m3 (verify)"
_BRIDGE = "schemas/parameters.py instrument limits (the bridge dead-letters beyond them)"
# Rates and flat-line lengths are engineering defaults for 1-minute readings, not from a
# standard: tune them per deployment. Wind direction is circular and steady wind legit, so
# neither rate nor flat line is tested on it; calm air (wind speed 0) repeats legitimately.
QC_LIMITS: dict[str, QcLimits] = {
    "pm25": QcLimits(0.0, 1000.0, 300.0, 30, spike_min_scale=2.0, source=_HJ653),
    "pm10": QcLimits(0.0, 1000.0, 500.0, 30, spike_min_scale=3.0, source=_HJ653),
    "so2": QcLimits(0.0, _gas_high("so2", 500), 500.0, 30, spike_min_scale=2.0, source=_HJ654),
    "no2": QcLimits(0.0, _gas_high("no2", 500), 500.0, 30, spike_min_scale=2.0, source=_HJ654),
    "o3": QcLimits(0.0, _gas_high("o3", 500), 300.0, 30, spike_min_scale=2.0, source=_HJ654),
    "co": QcLimits(0.0, _gas_high("co", 50_000), 20.0, 30, spike_min_scale=0.1, source=_HJ654),
    "temp": QcLimits(-60.0, 60.0, 3.0, 120, spike_min_scale=0.5, source=_BRIDGE),
    "rh": QcLimits(0.0, 100.0, 20.0, 0, spike_min_scale=2.0, source=_BRIDGE),  # saturates at 100 in fog
    "wind_speed": QcLimits(0.0, 75.0, 30.0, 0, spike_min_scale=1.0, source=_BRIDGE),
    "wind_dir": QcLimits(0.0, 360.0, float("inf"), 0, spike_z=float("inf"), source=_BRIDGE),
    "ph": QcLimits(0.0, 14.0, 1.0, 240, spike_min_scale=0.1, source=_BRIDGE),
    "do": QcLimits(0.0, 25.0, 2.0, 240, spike_min_scale=0.2, source=_BRIDGE),
    "codmn": QcLimits(0.0, 200.0, 10.0, 240, spike_min_scale=0.5, source=_BRIDGE),
    "nh3n": QcLimits(0.0, 100.0, 5.0, 240, spike_min_scale=0.05, source=_BRIDGE),
    "tp": QcLimits(0.0, 50.0, 2.0, 240, spike_min_scale=0.02, source=_BRIDGE),
    "water_temp": QcLimits(-5.0, 45.0, 1.0, 240, spike_min_scale=0.3, source=_BRIDGE),
}


def _series_start(n: int, series: ArrayLike | None) -> NDArray[np.int64]:
    """Index of the first reading of each reading's series."""
    if series is None:
        return np.zeros(n, dtype=np.int64)
    s = np.asarray(series)
    first = np.ones(n, dtype=bool)
    first[1:] = s[1:] != s[:-1]
    return np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _same_series_as_previous(n: int, series: ArrayLike | None) -> BoolArray:
    same = np.zeros(n, dtype=bool)
    if series is None:
        same[1:] = True
    else:
        s = np.asarray(series)
        same[1:] = s[1:] == s[:-1]
    return same


def range_flags(values: ArrayLike, low: float, high: float) -> BoolArray:
    v = np.asarray(values, dtype=np.float64)
    return (v < low) | (v > high)


IQR_TO_SIGMA = 1.349  # the interquartile range of a normal distribution, in standard deviations


def spike_flags(
    values: ArrayLike, window: int, z: float, min_scale: float, series: ArrayLike | None = None, chunk: int = 1 << 16
) -> BoolArray:
    """Robust z-score of each reading against the `window` readings of its series ending at it:
    |x - median| / max(IQR / 1.349, min_scale) > z, quartiles linearly interpolated (numpy's
    and Flink SQL's PERCENTILE's definition), and as far from the reading before it. Readings
    with fewer than `window - 1` predecessors in their series, or a NaN in the window, are not
    judged.

    The second condition keeps a level shift from being a run of spikes: a plume that arrives
    and stays is real, and only its first minute is suspect, while an isolated wrong value is
    far from both. (Without it the first half window of every sudden episode would be left
    out of the hours the alerts are made from.)

    The window includes the reading itself because the job computes it with a streaming OVER
    frame, which ends at the current row (jobs/quality.py); the median and the quartiles move by
    at most one rank for one outlier, so they stay robust. (MAD needs a median of deviations
    from a median: two passes, which a streaming frame cannot do; the IQR is the robust scale
    it can.)"""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    out = np.zeros(n, dtype=bool)
    if n < window or not np.isfinite(z):
        return out
    views = sliding_window_view(v, window)  # row j: readings j .. j+window-1, the window of reading j+window-1
    nan_count = np.concatenate(([0], np.cumsum(np.isnan(v))))
    start = _series_start(n, series)
    for a in range(0, n - window + 1, chunk):
        b = min(a + chunk, n - window + 1)
        q1, med, q3 = np.percentile(views[a:b], (25.0, 50.0, 75.0), axis=1)
        scale = np.maximum((q3 - q1) / IQR_TO_SIGMA, min_scale)
        i = np.arange(a + window - 1, b + window - 1)
        judged = (i - window + 1 >= start[i]) & (nan_count[i + 1] - nan_count[i + 1 - window] == 0)
        out[i] = judged & (np.abs(v[i] - med) > z * scale) & (np.abs(v[i] - v[i - 1]) > z * scale)
    return out


def flatline_flags(values: ArrayLike, n: int, series: ArrayLike | None = None, tol: float = 0.0) -> BoolArray:
    """True at a reading that is the n-th (or later) of consecutive equal values (|diff| <= tol)."""
    v = np.asarray(values, dtype=np.float64)
    size = v.shape[0]
    if n <= 1 or size == 0:
        return np.zeros(size, dtype=bool)
    same = _same_series_as_previous(size, series)
    same[1:] &= np.abs(np.diff(v)) <= tol
    run = np.cumsum(same)
    run_len = run - np.maximum.accumulate(np.where(~same, run, 0))  # equal predecessors in a row
    return run_len >= n - 1


def rate_flags(values: ArrayLike, event_time_ms: ArrayLike, max_per_min: float, series: ArrayLike | None = None) -> BoolArray:
    """True at a reading that changed from its predecessor faster than `max_per_min` per minute."""
    v = np.asarray(values, dtype=np.float64)
    t = np.asarray(event_time_ms, dtype=np.int64)
    out = np.zeros(v.shape[0], dtype=bool)
    if v.shape[0] < 2 or not np.isfinite(max_per_min):
        return out
    same = _same_series_as_previous(v.shape[0], series)[1:]
    dt_min = np.diff(t) / 60_000.0
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.abs(np.diff(v)) / dt_min
    out[1:] = same & (dt_min > 0) & (rate > max_per_min)
    return out


def status_flags(status: ArrayLike) -> BoolArray:
    """True where the device's HJ 212 flag makes the value invalid (anything but N or S)."""
    return ~np.isin(np.asarray(status), VALID_STATUS)


def qc_flags(
    parameter: str,
    values: ArrayLike,
    event_time_ms: ArrayLike,
    status: ArrayLike | None = None,
    calibration_missing: ArrayLike | None = None,
    series: ArrayLike | None = None,
    limits: QcLimits | None = None,
) -> NDArray[np.uint16]:
    """All flags of one parameter's readings (ordered by event time within each series)."""
    lim = limits or QC_LIMITS[parameter]
    v = np.asarray(values, dtype=np.float64)
    flags = np.zeros(v.shape[0], dtype=np.uint16)

    def mark(where: BoolArray, flag: QcFlag) -> None:
        flags[where] |= np.uint16(flag)

    mark(range_flags(v, lim.low, lim.high), QcFlag.RANGE)
    mark(spike_flags(v, lim.spike_window, lim.spike_z, lim.spike_min_scale, series), QcFlag.SPIKE)
    mark(flatline_flags(v, lim.flat_n, series), QcFlag.FLATLINE)
    mark(rate_flags(v, event_time_ms, lim.max_rate_per_min, series), QcFlag.RATE)
    if status is not None:
        mark(status_flags(status), QcFlag.STATUS)
    if calibration_missing is not None:
        mark(np.asarray(calibration_missing, dtype=bool), QcFlag.CALIBRATION_MISSING)
    return flags
