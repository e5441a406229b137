"""Calibration and quality control of station minutes, as Flink SQL views (pure, no Flink import).

    station_minutes_raw  the per-station minute pivot (jobs/sql.py): per parameter the sum and
                         count of the valid readings (<p>_sum, <p>_cnt), the count of readings
                         an HJ 212 flag made invalid (<p>_bad), the station's rh and temp
    minutes_calibrated   + the vectorised Python UDF `jw_calibrate` (jobs/calibration_udf.py,
                         calibration/station_minutes.py): each parameter by the registry model in
                         effect at the minute's start, covariates from the same row
    qc_frame_<n>         one OVER view per frame length n (Flink evaluates one frame per OVER
                         operator), rows = the station's last n minutes with data:
                         n = 2 the previous value (rate of change), n = spike window the
                         quartiles (robust z-score), n = flat-line length min/max/count
    station_minutes      the QC bitmask per parameter, and the <p>_sum / <p>_cnt the hours
                         average, now of calibrated values and only of minutes no excluding
                         flag marks (calibration/qc.py EXCLUDING; RATE alone does not exclude)

The tests are those of calibration/qc.py (QC_LIMITS), which tests/integration compare with
this SQL on the same minutes. Every flag is causal (a minute is judged on itself and the
minutes before it) and event-time ordered, so a replay flags the same minutes.
"""

from __future__ import annotations

import math

from calibration.qc import EXCLUDING, IQR_TO_SIGMA, QC_LIMITS, QcFlag, QcLimits
from calibration.station_minutes import COVARIATES

UDF_NAME = "jw_calibrate"


def _q(p: str) -> str:
    """The value QC judges: the calibrated one, or the raw one where calibration is missing."""
    return f"COALESCE({_col(p)}, {p}_raw)"


def udf_result_fields(parameters: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, Flink SQL type) of the ROW jw_calibrate returns, in order."""
    return [f for p in parameters for f in ((p, "DOUBLE"), (f"{p}_model", "STRING"), (f"{p}_missing", "BOOLEAN"))]


def _col(name: str) -> str:
    return f"`{name}`"  # bare parameter names (do, co, ...) may be SQL words


def calibrated_views(parameters: tuple[str, ...], passthrough: tuple[str, ...]) -> list[str]:
    """minutes_called (the UDF's ROW) and minutes_calibrated (its fields as columns)."""
    keep = ", ".join([*passthrough, *(f"{p}_cnt" for p in parameters)])
    means = [f"{p}_sum / {p}_cnt" for p in parameters]
    covs = [f"{c}_sum / {c}_cnt" for c in COVARIATES]
    raw = ", ".join(f"{m} AS {p}_raw" for m, p in zip(means, parameters))
    cov = ", ".join(f"{m} AS {_col(c)}" for m, c in zip(covs, COVARIATES))
    called = f"""
CREATE TEMPORARY VIEW minutes_called AS
SELECT station_id, region, medium, s_time, s_end, minute_ms, {keep}, {raw}, {cov}, {', '.join(f'{p}_bad' for p in parameters)},
       {UDF_NAME}({', '.join(['station_id', 'minute_ms - 60000', *means, *covs])}) AS c
FROM (SELECT *, {_minute_ms()} AS minute_ms FROM station_minutes_raw)"""
    flat = ", ".join(f"c.{_col(name)} AS {_col(name)}" for name, _ in udf_result_fields(parameters))
    calibrated = f"""
CREATE TEMPORARY VIEW minutes_calibrated AS
SELECT station_id, region, medium, s_time, s_end, minute_ms, {keep}, {', '.join(f'{p}_raw' for p in parameters)},
       {', '.join(map(_col, COVARIATES))}, {', '.join(f'{p}_bad' for p in parameters)},
       {flat}
FROM minutes_called"""
    return [called, calibrated]


def _minute_ms() -> str:
    return "CAST(TIMESTAMPDIFF(MINUTE, TIMESTAMP '1970-01-01 00:00:00', s_end) AS BIGINT) * 60000"


def _frames(parameters: tuple[str, ...]) -> dict[int, list[str]]:
    """Per frame length, the aggregate columns it computes; <p>_n<len> counts the values in the frame."""
    frames: dict[int, list[str]] = {}

    def add(n: int, p: str, *columns: str) -> None:
        cols = frames.setdefault(n, [])
        count = f"COUNT({_q(p)}) OVER w AS {p}_n{n}"
        cols.extend(c for c in (count, *columns) if c not in cols)

    for p in parameters:
        lim, q = QC_LIMITS[p], _q(p)
        if math.isfinite(lim.max_rate_per_min) or math.isfinite(lim.spike_z):  # both compare with the minute before
            add(2, p, f"FIRST_VALUE({q}) OVER w AS {p}_prev", f"FIRST_VALUE(CASE WHEN {q} IS NOT NULL THEN minute_ms END) OVER w AS {p}_prev_ms")
        if math.isfinite(lim.spike_z):
            add(lim.spike_window, p, f"PERCENTILE({q}, ARRAY[0.25, 0.5, 0.75]) OVER w AS {p}_quartiles")
        if lim.flat_n > 1:
            add(lim.flat_n, p, f"MIN({q}) OVER w AS {p}_flat_min", f"MAX({q}) OVER w AS {p}_flat_max")
    return dict(sorted(frames.items()))


def frame_views(parameters: tuple[str, ...]) -> tuple[list[str], str]:
    """(the OVER views, the name of the last one)."""
    views, source = [], "minutes_calibrated"
    for n, columns in _frames(parameters).items():
        name = f"qc_frame_{n}"
        cols = ",\n       ".join(columns)
        views.append(f"""
CREATE TEMPORARY VIEW {name} AS
SELECT *,
       {cols}
FROM {source}
WINDOW w AS (PARTITION BY station_id ORDER BY s_time ROWS BETWEEN {n - 1} PRECEDING AND CURRENT ROW)""")
        source = name
    return views, source


def _flag_conditions(p: str, lim: QcLimits) -> dict[QcFlag, str]:
    """Per flag, the SQL condition that sets it (on a row of the last frame view)."""
    q = _q(p)
    cond = {QcFlag.RANGE: f"{q} < {lim.low!r} OR {q} > {lim.high!r}"}
    if math.isfinite(lim.spike_z):
        med, q1, q3 = f"{p}_quartiles[2]", f"{p}_quartiles[1]", f"{p}_quartiles[3]"
        scale = f"GREATEST(({q3} - {q1}) / {IQR_TO_SIGMA}, {lim.spike_min_scale!r})"
        far = f"{lim.spike_z!r} * {scale}"  # far from the window's median and from the minute before (qc.spike_flags)
        cond[QcFlag.SPIKE] = f"{p}_n{lim.spike_window} = {lim.spike_window} AND ABS({q} - {med}) > {far} AND ABS({q} - {p}_prev) > {far}"
    if lim.flat_n > 1:
        cond[QcFlag.FLATLINE] = f"{p}_n{lim.flat_n} = {lim.flat_n} AND {p}_flat_max - {p}_flat_min <= 0"
    if math.isfinite(lim.max_rate_per_min):
        cond[QcFlag.RATE] = (f"{p}_prev_ms < minute_ms AND "
                             f"ABS({q} - {p}_prev) / (CAST(minute_ms - {p}_prev_ms AS DOUBLE) / 60000) > {lim.max_rate_per_min!r}")
    cond[QcFlag.STATUS] = f"{p}_raw IS NULL AND {p}_bad > 0"  # only invalid readings this minute
    cond[QcFlag.CALIBRATION_MISSING] = f"{p}_missing"
    return cond


def _true(condition: str) -> str:
    return f"COALESCE({condition}, FALSE)"


def final_view(parameters: tuple[str, ...], passthrough: tuple[str, ...], source: str) -> str:
    """station_minutes: per parameter the mask <p>_qc, and <p>_sum / <p>_cnt of the values the hours may use."""
    cols = []
    for p in parameters:
        cond = _flag_conditions(p, QC_LIMITS[p])
        mask = " + ".join(f"CASE WHEN {_true(c)} THEN {int(f)} ELSE 0 END" for f, c in cond.items())
        excluded = " OR ".join(_true(c) for f, c in cond.items() if f & EXCLUDING)
        cols += [
            f"CASE WHEN {p}_raw IS NOT NULL OR {p}_bad > 0 THEN CAST({mask} AS BIGINT) END AS {p}_qc",
            f"CASE WHEN {_q(p)} IS NOT NULL AND NOT ({excluded}) THEN {_q(p)} * {p}_cnt END AS {p}_sum",
            f"CASE WHEN {_q(p)} IS NOT NULL AND NOT ({excluded}) THEN {p}_cnt END AS {p}_cnt",
            f"{p}_raw", _col(p), f"{p}_model",
        ]
    body = ",\n       ".join(cols)
    return f"""
CREATE TEMPORARY VIEW station_minutes AS
SELECT station_id, region, medium, s_time, s_end, minute_ms, {', '.join(passthrough)}, {', '.join(map(_col, COVARIATES))},
       {body}
FROM {source}"""


def quality_views(parameters: tuple[str, ...], passthrough: tuple[str, ...]) -> list[str]:
    """Every view from station_minutes_raw to station_minutes (`passthrough`: columns carried unchanged, e.g. wind)."""
    frames, last = frame_views(parameters)
    return [*calibrated_views(parameters, passthrough), *frames, final_view(parameters, passthrough, last)]


def station_minute_columns(parameters: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, Flink type) of the jw.station_minute.v1 value columns, in sink order."""
    cols = [(c, "DOUBLE") for c in COVARIATES]
    for p in parameters:
        cols += [(f"{p}_raw", "DOUBLE"), (p, "DOUBLE"), (f"{p}_model", "STRING"), (f"{p}_qc", "BIGINT")]
    return cols
