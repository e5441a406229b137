"""The job's station-minute calibration and QC, computed independently with the library
(calibration/station_minutes.py, calibration/qc.py) from the readings themselves: what
the integration tests compare the job's jw.station_minute.v1 records and hours with."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from calibration.qc import QcFlag, excluded, qc_flags
from calibration.registry import Registry
from calibration.station_minutes import COVARIATES, calibrate_minutes
from jobs.validity import INDEX_PARAMETERS

MINUTE = 60_000


def station_minutes(readings: list[dict[str, Any]], registry: Registry) -> pd.DataFrame:
    """One row per station and minute with a reading (index: station_id, minute end in ms), with
    <p>_raw, <p> (calibrated), <p>_model, <p>_qc and <p>_ok (may enter an hour) per index parameter."""
    df = pd.DataFrame(readings)
    df["minute_end"] = (df["event_time"] // MINUTE + 1) * MINUTE
    df["valid"] = df["status"].isin(["N", "S"])
    keys = ["station_id", "minute_end"]
    means = df[df["valid"]].pivot_table(index=keys, columns="parameter", values="value", aggfunc="mean")
    bad = df[~df["valid"]].pivot_table(index=keys, columns="parameter", values="value", aggfunc="count")
    rows = pd.DataFrame(index=pd.MultiIndex.from_frame(df[keys].drop_duplicates().sort_values(keys)))
    out = rows.join(means).join(bad.add_suffix("_bad"))
    column = lambda name: out[name].to_numpy(dtype=np.float64) if name in out else np.full(len(out), np.nan)  # noqa: E731
    stations = out.index.get_level_values(0).to_numpy(dtype=object)
    ends = out.index.get_level_values(1).to_numpy(dtype=np.int64)
    params = [p for p in INDEX_PARAMETERS if p in out]
    cal = calibrate_minutes(registry, stations, ends - MINUTE, {p: column(p) for p in params}, {c: column(c) for c in COVARIATES})
    result = pd.DataFrame(index=out.index)
    for c in COVARIATES:
        result[c] = column(c)
    for p in params:
        raw, value = column(p), cal[p].value
        q = np.where(np.isnan(value), raw, value)
        flags = np.zeros(len(out), dtype=np.int64)
        for station in np.unique(stations):  # QC runs over each station's minutes in event-time order
            at = stations == station
            flags[at] = qc_flags(p, q[at], ends[at], calibration_missing=cal[p].missing[at]).astype(np.int64)
        status_only = np.isnan(raw) & (column(f"{p}_bad") > 0)
        flags = flags | np.where(status_only, int(QcFlag.STATUS), 0)
        present = ~np.isnan(raw) | status_only
        result[f"{p}_raw"], result[p], result[f"{p}_model"] = raw, value, cal[p].model
        result[f"{p}_qc"] = np.where(present, flags, -1)
        result[f"{p}_ok"] = ~np.isnan(q) & ~excluded(flags)
        result[f"{p}_q"] = q
    return result
