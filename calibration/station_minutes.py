"""Calibration of station minutes: the per-minute work the Flink job hands to Python.

The job pivots each station's minute into one row (the mean of every index parameter's
valid readings, and the station's rh and temp means). A batch of such rows is
calibrated here, vectorised: per parameter one `Registry.calibrate` over the whole
batch, the model chosen by the minute's own event time (its start: a version effective
from 10:00 calibrates the minute 10:00-10:01 and those after it), the covariates taken
from the same row. So the job, a replay and the tests run this same function.

Why minutes, not single readings: the covariates a model needs (rh, temp) are other
parameters of the same station, which arrive as separate readings; the minute row
holds them side by side without a join. At the network's 60 s sampling a minute mean
is the reading itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration.registry import Registry

COVARIATES = ("rh", "temp")  # the station-minute columns models may use


@dataclass(frozen=True)
class MinuteCalibration:
    """One parameter's calibration of a batch of station minutes."""

    value: NDArray[np.float64]  # calibrated; NaN where no reading or calibration missing
    model: NDArray[np.object_]  # 'model_id@version', None where no model applied
    missing: NDArray[np.bool_]  # calibration missing (a listed sensor without a model in effect, or without its covariates)


def calibrate_minutes(
    registry: Registry,
    station_ids: ArrayLike,
    minute_start_ms: ArrayLike,
    values: Mapping[str, ArrayLike],
    covariates: Mapping[str, ArrayLike],
) -> dict[str, MinuteCalibration]:
    """Calibrate each parameter of `values` (parameter -> minute means, NaN where none).

    A minute without a reading of a parameter is neither calibrated nor missing.
    """
    stations = np.asarray(station_ids)
    t = np.asarray(minute_start_ms, dtype=np.int64)
    cov = {name: np.asarray(covariates[name], dtype=np.float64) for name in COVARIATES if name in covariates}
    # the batch's stations once (a few dozen), not every row's string per parameter
    st_u, st_inv = np.unique(stations, return_inverse=True)
    out: dict[str, MinuteCalibration] = {}
    for parameter, raw in values.items():
        v = np.asarray(raw, dtype=np.float64)
        present = ~np.isnan(v)
        codes_u = registry.sensor_codes(st_u, np.full(st_u.shape, parameter))
        if registry.unlisted == "pass" and (codes_u < 0).all():  # no sensor of the batch listed: values as measured
            out[parameter] = MinuteCalibration(value=v, model=np.full(v.shape, None, dtype=object), missing=np.zeros(v.shape, dtype=bool))
            continue
        cal = registry.calibrate(codes_u[st_inv.ravel()], t, v, cov)
        applied = cal.entry >= 0
        refs = np.char.add(np.char.add(cal.model_id.astype(str), "@"), cal.version.astype(str))
        model = np.where(applied & present, refs.astype(object), None)
        out[parameter] = MinuteCalibration(value=cal.value, model=model, missing=cal.missing & present)
    return out
