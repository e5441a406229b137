"""`jw_calibrate`: the job's vectorised (pandas) Python UDF over station minutes.

Flink hands it Arrow batches of station-minute rows; it calibrates each batch with
calibration/station_minutes.py (numpy, one pass per parameter and model, no
per-row Python) against the registry the RegistryFeed keeps current from
jw.control.calibration, and returns one ROW per minute (jobs/quality.py
udf_result_fields). The feed starts in `open`, on the Python worker.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from jobs.quality import COVARIATES, UDF_NAME, udf_result_fields

_TYPES = {"DOUBLE": DataTypes.DOUBLE(), "STRING": DataTypes.STRING(), "BOOLEAN": DataTypes.BOOLEAN()}


class CalibrateMinutes(ScalarFunction):
    def __init__(self, bootstrap: str, topic: str, unlisted: str, parameters: tuple[str, ...]) -> None:
        self.bootstrap, self.topic, self.unlisted, self.parameters = bootstrap, topic, unlisted, parameters
        self.feed: Any = None

    def open(self, function_context: FunctionContext) -> None:
        from connectors.registry_feed import RegistryFeed  # on the worker: Kafka client, background thread

        self.feed = RegistryFeed(self.bootstrap, self.topic, self.unlisted).start()  # type: ignore[arg-type]

    def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()

    def eval(self, station_id: pd.Series, minute_start_ms: pd.Series, *columns: pd.Series) -> pd.DataFrame:
        from calibration.station_minutes import calibrate_minutes

        n = len(self.parameters)
        values = {p: columns[i].to_numpy(dtype=np.float64, na_value=np.nan) for i, p in enumerate(self.parameters)}
        covariates = {c: columns[n + i].to_numpy(dtype=np.float64, na_value=np.nan) for i, c in enumerate(COVARIATES)}
        result = calibrate_minutes(self.feed.registry, station_id.to_numpy(dtype=object), minute_start_ms.to_numpy(dtype=np.int64), values, covariates)
        out: dict[str, Any] = {}
        for p in self.parameters:
            r = result[p]
            out[p] = pd.Series(r.value).where(~np.isnan(r.value), None)  # NaN would reach SQL as a number, not NULL
            out[f"{p}_model"] = pd.Series(r.model, dtype=object)
            out[f"{p}_missing"] = pd.Series(r.missing, dtype=bool)
        return pd.DataFrame(out)


def calibrate_udf(bootstrap: str, topic: str, unlisted: str, parameters: tuple[str, ...]) -> UserDefinedScalarFunctionWrapper:
    fields = [DataTypes.FIELD(name, _TYPES[t]) for name, t in udf_result_fields(parameters)]
    return udf(CalibrateMinutes(bootstrap, topic, unlisted, parameters), result_type=DataTypes.ROW(fields), func_type="pandas")


__all__ = ["UDF_NAME", "calibrate_udf"]
