"""The job's Flink SQL, built from settings by pure functions (no Flink import).

All per-reading work stays in the JVM: JSON decoding, event-time windows,
rolling and clock-hour means, the 8-h / 24-h windows with their validity counts
and the wind vector are SQL. Python only assembles the statements. Alerts are
not made here: the Python alert stage derives them from jw.indices.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from jobs.quality import COVARIATES, quality_views, station_minute_columns
from jobs.validity import INDEX_PARAMETERS, MIN_MINUTES, MIN_O3_8H_HOURS, O3_8H_MAX_WINDOW_H
from schemas.topics import (
    READINGS_ALIGNED, READINGS_HOURLY, READINGS_LATE, READINGS_RAW, READINGS_REVISIONS, STATION_CLOCK_HOURS, STATION_HOURS, STATION_MINUTES, Topic,
    namespaced,
)


@dataclass(frozen=True)
class JobOptions:
    bootstrap: str
    namespace: str = ""
    group_id: str = "jw-align"
    out_of_orderness_s: int = 30  # how late (event time) a reading may arrive and still count
    source_idle_s: int = 30  # a partition silent this long stops holding the watermark back
    startup_mode: str = "group-offsets"  # or earliest-offset (replays, tests)
    allowed_lateness_min: int = 10  # an emitted minute is revised by readings arriving up to this long after it closed
    default_sampling_s: int = 60  # the reporting interval a window's expected count is made of...
    sampling_s: tuple[tuple[str, int], ...] = ()  # ...and the stations that report at another one
    calibrate: bool = True  # calibrate and quality-control station minutes (jobs/quality.py); False: aligned only
    calibration_unlisted: str = "pass"  # sensors the registry does not list: "pass" or "flag" (calibration missing)

    def topic(self, t: Topic) -> str:
        return namespaced(t, self.namespace)


WIND_DIR, WIND_SPEED = "wind_dir", "wind_speed"  # schemas/parameters.py: degrees the wind comes FROM; m/s


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _kafka_sink(opts: JobOptions, topic: Topic) -> str:
    return f"""
  'connector' = 'kafka',
  'topic' = {_q(opts.topic(topic))},
  'properties.bootstrap.servers' = {_q(opts.bootstrap)},
  'key.format' = 'raw',
  'key.fields' = {_q(topic.key)},
  'value.format' = 'json',
  'value.fields-include' = 'ALL',
  'sink.delivery-guarantee' = 'at-least-once',
  'properties.linger.ms' = '20',
  'properties.batch.size' = '262144',
  'properties.compression.type' = 'lz4'"""


def source_ddl(opts: JobOptions) -> str:
    return f"""
CREATE TABLE readings (
  reading_id STRING,
  station_id STRING,
  region STRING,
  medium STRING,
  `parameter` STRING,
  `value` DOUBLE,
  unit STRING,
  event_time BIGINT,
  received_at BIGINT,
  device_time STRING,
  status STRING,
  clock_corrected BOOLEAN,
  clock_offset_ms BIGINT,
  ts AS TO_TIMESTAMP_LTZ(event_time, 3),
  WATERMARK FOR ts AS ts - INTERVAL '{opts.out_of_orderness_s}' SECOND
) WITH (
  'connector' = 'kafka',
  'topic' = {_q(opts.topic(READINGS_RAW))},
  'properties.bootstrap.servers' = {_q(opts.bootstrap)},
  'properties.group.id' = {_q(opts.group_id)},
  'properties.auto.offset.reset' = 'earliest',
  'scan.startup.mode' = {_q(opts.startup_mode)},
  'scan.watermark.idle-timeout' = '{opts.source_idle_s} s',
  'format' = 'json',
  'json.fail-on-missing-field' = 'true'
)"""


AGGREGATE_COLUMNS = """
  station_id STRING,
  region STRING,
  medium STRING,
  `parameter` STRING,
  unit STRING,
  `window` STRING,
  window_start BIGINT,
  window_end BIGINT,
  mean DOUBLE,
  `min` DOUBLE,
  `max` DOUBLE,
  `count` BIGINT,
  duplicates BIGINT,
  clock_corrected BIGINT,
  minutes BIGINT,
  expected DOUBLE,
  completeness DOUBLE,
  version BIGINT"""


def sink_ddls(opts: JobOptions) -> list[str]:
    return [
        f"""CREATE TABLE late_sink (
  `schema` STRING,
  reason STRING,
  reading_id STRING,
  station_id STRING,
  `parameter` STRING,
  `value` DOUBLE,
  event_time BIGINT,
  received_at BIGINT,
  device_time STRING,
  `watermark` BIGINT,
  late_by_ms BIGINT,
  allowed_lateness_ms BIGINT
) WITH ({_kafka_sink(opts, READINGS_LATE)}
)""",
        f"CREATE TABLE aligned_sink (`schema` STRING,{AGGREGATE_COLUMNS}\n) WITH ({_kafka_sink(opts, READINGS_ALIGNED)}\n)",
        f"""CREATE TABLE revisions_sink (`schema` STRING,{AGGREGATE_COLUMNS},
  PRIMARY KEY (station_id, `parameter`, window_start) NOT ENFORCED
) WITH (
  'connector' = 'upsert-kafka',
  'topic' = {_q(opts.topic(READINGS_REVISIONS))},
  'properties.bootstrap.servers' = {_q(opts.bootstrap)},
  'key.format' = 'json',
  'value.format' = 'json',
  'value.fields-include' = 'ALL',
  -- the buffer keeps only a key's last change per flush: a revision's transient retraction
  -- (a DELETE, a tombstone) and its re-insert within the same second leave one record
  'sink.buffer-flush.max-rows' = '1000',
  'sink.buffer-flush.interval' = '1 s'
)""",
        f"CREATE TABLE rolling_sink (`schema` STRING,{AGGREGATE_COLUMNS}\n) WITH ({_kafka_sink(opts, READINGS_HOURLY)}\n)",
        _station_hours_sink(opts, INDEX_PARAMETERS),
        _station_clock_hours_sink(opts, INDEX_PARAMETERS),
        _station_sink(opts, "station_minutes_sink", STATION_MINUTES, station_minute_columns(INDEX_PARAMETERS)),
    ]


def _epoch_ms(col: str, whole_minutes: bool = True) -> str:
    # Timestamps render in the session zone, which the job pins to UTC. Window bounds are
    # whole minutes (TIMESTAMP, UTC wall clock): minutes since the epoch, pure arithmetic. The
    # former UNIX_TIMESTAMP(DATE_FORMAT(...)) formatted and parsed a string per bound, per
    # output record: 24.7-25.0k -> 28.4k readings/s with this alone (tp.py, 201,600 readings).
    if whole_minutes:
        return f"CAST(TIMESTAMPDIFF(MINUTE, TIMESTAMP '1970-01-01 00:00:00', {col}) AS BIGINT) * 60000"
    seconds = f"UNIX_TIMESTAMP(DATE_FORMAT({col}, 'yyyy-MM-dd HH:mm:ss')) * 1000"  # the watermark (late readings only)
    return f"({seconds} + CAST(DATE_FORMAT({col}, 'SSS') AS BIGINT))"


# Each reading is split by the source's watermark (the documented CURRENT_WATERMARK pattern),
# at minute granularity, as the windows themselves decide: a window drops a reading only once
# it has fired (window_end - 1 ms <= watermark), so the first open minute starts at
# FLOOR(watermark + 1 ms TO MINUTE). Readings in open minutes go to the windows; readings of
# minutes closed at most allowed_lateness ago revise them (REVISION_VIEWS); older ones go to
# the late topic with the reason. The source's watermark is never behind the windows' own,
# so what is sent to the windows is never dropped there.
_OPEN_FROM = "FLOOR(CURRENT_WATERMARK(ts) + INTERVAL '0.001' SECOND TO MINUTE)"


def _on_time() -> str:
    return f"CURRENT_WATERMARK(ts) IS NULL OR ts >= {_OPEN_FROM}"


def _revisable(opts: JobOptions) -> str:
    return f"ts < {_OPEN_FROM} AND ts >= {_OPEN_FROM} - INTERVAL '{opts.allowed_lateness_min}' MINUTE"


def on_time_view() -> str:
    return f"""
CREATE TEMPORARY VIEW on_time AS
SELECT * FROM readings WHERE {_on_time()}"""


def insert_late(opts: JobOptions) -> str:
    wm = _epoch_ms("CURRENT_WATERMARK(ts)", whole_minutes=False)
    return f"""
INSERT INTO late_sink
SELECT 'jw.late.v2', 'beyond_allowed_lateness', reading_id, station_id, `parameter`, `value`, event_time, received_at, device_time,
       {wm}, event_time - {wm}, CAST({opts.allowed_lateness_min * 60_000} AS BIGINT)
FROM readings
WHERE ts < {_OPEN_FROM} - INTERVAL '{opts.allowed_lateness_min}' MINUTE"""


# One-minute tumbling means per station and parameter, from valid (status N or S) readings.
# Wind direction is an angle: its mean is the mean unit vector, so each wind_dir reading also
# contributes sin/cos (null for every other parameter), per reading in the JVM.
# Duplicates (a gateway re-sending after a reconnect) have the same reading_id (station,
# parameter and the device's own time, before any clock correction, so a copy corrected by a
# slightly different offset is still recognised): each counts once, with the number of copies
# kept, so the one-minute record says how many were dropped as duplicates. Conflicting copies
# keep the smallest value and time (order-independent, so replays agree). Event-time windows
# throughout: no processing-time state, nothing to expire.
DISTINCT_VIEW = """
CREATE TEMPORARY VIEW distinct_readings AS
SELECT station_id, region, medium, `parameter`, unit, window_start AS d_start, window_time AS d_time, reading_id,
       MIN(`value`) AS `value`, COUNT(*) AS copies, MAX(CASE WHEN clock_corrected THEN 1 ELSE 0 END) AS corrected,
       status IN ('N', 'S') AS valid  -- HJ 212: only normal and manually entered values are valid
FROM TABLE(TUMBLE(TABLE on_time, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY station_id, region, medium, `parameter`, unit, window_start, window_end, window_time, status IN ('N', 'S'), reading_id"""

# One-minute means per station and parameter of the distinct valid readings (a cascaded
# window: the same minute, on the first level's window time).
MINUTE_VIEW = f"""
CREATE TEMPORARY VIEW minute_means AS
SELECT station_id, region, medium, `parameter`, unit,
       window_start AS m_start, window_end AS m_end, window_time AS m_time,
       SUM(`value`) AS vsum, MIN(`value`) AS vmin, MAX(`value`) AS vmax, COUNT(*) AS cnt, SUM(copies) - COUNT(*) AS dups, SUM(corrected) AS corrected,
       SUM(CASE WHEN `parameter` = '{WIND_DIR}' THEN SIN(RADIANS(`value`)) END) AS sin_sum,
       SUM(CASE WHEN `parameter` = '{WIND_DIR}' THEN COS(RADIANS(`value`)) END) AS cos_sum
FROM TABLE(TUMBLE(TABLE distinct_readings, DESCRIPTOR(d_time), INTERVAL '1' MINUTE))
WHERE valid
GROUP BY station_id, region, medium, `parameter`, unit, window_start, window_end, window_time"""

# Rolling hour ending at each minute a station reports: an event-time OVER window on the
# minute means (one incremental update per minute, instead of merging 60 panes per output).
ROLLING_VIEW = """
CREATE TEMPORARY VIEW rolling_means AS
SELECT station_id, region, medium, `parameter`, unit,
       m_end - INTERVAL '60' MINUTE AS window_start, m_end AS window_end, m_time AS window_time,
       SUM(vsum) OVER w / SUM(cnt) OVER w AS mean, SUM(sin_sum) OVER w AS sin_sum, SUM(cos_sum) OVER w AS cos_sum, MIN(vmin) OVER w AS vmin, MAX(vmax) OVER w AS vmax,
       SUM(cnt) OVER w AS cnt, SUM(dups) OVER w AS dups, SUM(corrected) OVER w AS corrected, COUNT(*) OVER w AS minutes
FROM minute_means
WINDOW w AS (PARTITION BY station_id, `parameter` ORDER BY m_time RANGE BETWEEN INTERVAL '59' MINUTE PRECEDING AND CURRENT ROW)"""


def _pivot(parameter: str, column: str, name: str) -> str:
    return f"SUM(CASE WHEN `parameter` = {_q(parameter)} THEN {column} END) AS {name}"


# The index stage needs a station's parameters side by side for the same hour: pivot the
# distinct readings per station minute (the same one-minute windows as minute_means, a
# cascaded window, still append-only), then roll an hour per station. Per parameter the sum
# and count of a station minute are those of minute_means (vsum, cnt; sin/cos sums for wind
# direction), so the mean and minutes equal those of rolling_means. Pivoting minute_means
# itself made the planner run the one-minute aggregation twice (aligned and the pivot prune
# it to different columns, so it is not reused): pivoting the distinct readings saves that
# stage, 24.7-25.0k -> 28.5k readings/s alone (tp.py, 201,600 readings). The same holds for
# distinct_readings itself: the pivot's count of 1 reads `copies` and `corrected` (always
# >= 1 and >= 0), so that it consumes the columns aligned does and the planner computes the
# de-duplication once, not twice: 15.7-18.6k -> 19.6-20.4k readings/s, alternating runs on a
# loaded machine (tp.py, 2026-11-22). Wind rides along for the downwind assist (speed mean;
# direction as the mean of its unit vectors).
def _station_views(parameters: tuple[str, ...], calibrate: bool) -> list[str]:
    """The per-station minute pivot and the rolling hour over it. With calibration the pivot is
    station_minutes_raw (with invalid-status counts and the rh/temp covariates) and
    jobs/quality.py's views turn it into station_minutes; without, the pivot is station_minutes."""
    means = (*parameters, WIND_SPEED)
    # without calibration only valid readings reach the pivot (WHERE); with it, invalid ones are counted (<p>_bad)
    kept = (lambda col: f"CASE WHEN valid THEN {col} END") if calibrate else (lambda col: col)  # noqa: E731
    one = kept("CASE WHEN copies > 0 AND corrected >= 0 THEN CAST(1 AS BIGINT) END")
    summed = [f"{_pivot(p, kept('`value`'), f'{p}_sum')}, {_pivot(p, one, f'{p}_cnt')}" for p in (*means, *(COVARIATES if calibrate else ()))]
    summed += [f"{_pivot(WIND_DIR, kept('SIN(RADIANS(`value`))'), 'wind_dir_sin_sum')}, "
               f"{_pivot(WIND_DIR, kept('COS(RADIANS(`value`))'), 'wind_dir_cos_sum')}, {_pivot(WIND_DIR, one, 'wind_dir_cnt')}"]
    if calibrate:
        summed += [_pivot(p, "CASE WHEN NOT valid THEN CAST(1 AS BIGINT) END", f"{p}_bad") for p in parameters]
    sums = ",\n       ".join(summed)
    where, pivot = ("", "station_minutes_raw") if calibrate else ("WHERE valid\n", "station_minutes")
    rolled = ",\n       ".join(
        [f"SUM({p}_sum) OVER w / SUM({p}_cnt) OVER w AS {p}_mean, COUNT({p}_cnt) OVER w AS {p}_minutes" for p in means]
        + ["SUM(wind_dir_sin_sum) OVER w / SUM(wind_dir_cnt) OVER w AS wind_dir_sin_mean, "
           "SUM(wind_dir_cos_sum) OVER w / SUM(wind_dir_cnt) OVER w AS wind_dir_cos_mean, "
           "COUNT(wind_dir_cnt) OVER w AS wind_dir_minutes"]
    )
    minutes = f"""
CREATE TEMPORARY VIEW {pivot} AS
SELECT station_id, region, medium, window_time AS s_time, window_end AS s_end,
       {sums}
FROM TABLE(TUMBLE(TABLE distinct_readings, DESCRIPTOR(d_time), INTERVAL '1' MINUTE))
{where}GROUP BY station_id, region, medium, window_start, window_end, window_time"""
    hours = f"""
CREATE TEMPORARY VIEW station_hours AS
SELECT station_id, region, medium, s_end - INTERVAL '60' MINUTE AS window_start, s_end AS window_end,
       {rolled}
FROM station_minutes
WINDOW w AS (PARTITION BY station_id ORDER BY s_time RANGE BETWEEN INTERVAL '59' MINUTE PRECEDING AND CURRENT ROW)"""
    passthrough = ("wind_speed_sum", "wind_speed_cnt", "wind_dir_sin_sum", "wind_dir_cos_sum", "wind_dir_cnt")
    return [minutes, *(quality_views(parameters, passthrough) if calibrate else []), hours]


WIND_COLUMNS = (
    ("wind_speed_mean", "DOUBLE"), ("wind_speed_minutes", "BIGINT"),
    ("wind_dir_sin_mean", "DOUBLE"), ("wind_dir_cos_mean", "DOUBLE"), ("wind_dir_minutes", "BIGINT"),
)


def _station_sink(opts: JobOptions, name: str, topic: Topic, columns: list[tuple[str, str]]) -> str:
    """A per-station sink: the station's identity and window, then `columns` (name, SQL type)."""
    cols = ",\n  ".join(f"{c} {t}" for c, t in columns)
    return f"""CREATE TABLE {name} (
  `schema` STRING,
  station_id STRING,
  region STRING,
  medium STRING,
  window_start BIGINT,
  window_end BIGINT,
  {cols}
) WITH ({_kafka_sink(opts, topic)}
)"""


def _station_hours_sink(opts: JobOptions, parameters: tuple[str, ...]) -> str:
    columns = [c for p in parameters for c in ((f"{p}_mean", "DOUBLE"), (f"{p}_minutes", "BIGINT"))]
    return _station_sink(opts, "station_hours_sink", STATION_HOURS, columns + list(WIND_COLUMNS))


def _insert_station_hours(parameters: tuple[str, ...]) -> str:
    cols = ", ".join([f"{p}_mean, {p}_minutes" for p in parameters] + [c for c, _ in WIND_COLUMNS])
    return f"""
INSERT INTO station_hours_sink
SELECT 'jw.station_hour.v2', station_id, region, medium, {_epoch_ms('window_start')}, {_epoch_ms('window_end')}, {cols}
FROM station_hours"""


# --- clock hours and the long windows -------------------------------------------------------
#
# GB 3095 Table 4 (STANDARDS.md; alerts/standards/data/hj633-*.yaml `validity`): a 1-h mean
# needs >= 45 minutes of data, a 24-h mean >= 20 valid 1-h means, an 8-h O3 mean >= 6, the
# daily max 8-h O3 >= 14 valid 8-h means ending 08:00..24:00. The job counts; the index stage
# applies the counts (by the edition in force). Only the 8-h means entering the running max
# are filtered here, since a max cannot be un-taken later.
#
# Chain, each step append-only and ordered by the clock hour's event time (h_time):
#   clock_hours   TUMBLE 1 h over the per-station minute pivot: 1-h mean + minutes with data
#   clock_o3_8h   OVER the last 8 clock hours: mean of the valid 1-h O3 means, their count
#   clock_o3_max  OVER the last 17 clock hours: max of the valid 8-h means (the 8-h windows
#                 lying inside the last 24 hours), their count
#   clock_days    OVER the last 24 clock hours: per parameter the mean of the valid 1-h means
#                 and their count; the max valid 1-h O3
# Flink evaluates one frame per OVER operator, hence one view per frame. A station hour with
# no reading at all has no row, so it is never counted as valid (and no 8-h mean ends there).


def _valid(p: str) -> str:
    """The 1-h mean of `p` where the hour is valid, else NULL (what the long windows average)."""
    return f"CASE WHEN {p}_minutes >= {MIN_MINUTES} THEN {p}_mean END"


def _over(frame_hours: int) -> str:
    return f"WINDOW w AS (PARTITION BY station_id ORDER BY h_time RANGE BETWEEN INTERVAL '{frame_hours - 1}' HOUR PRECEDING AND CURRENT ROW)"


def _clock_views(parameters: tuple[str, ...]) -> tuple[str, str, str, str]:
    hour_cols = ", ".join(f"{p}_mean, {p}_minutes" for p in parameters)
    hourly = ",\n       ".join(f"SUM({p}_sum) / SUM({p}_cnt) AS {p}_mean, COUNT({p}_cnt) AS {p}_minutes" for p in parameters)
    hours = f"""
CREATE TEMPORARY VIEW clock_hours AS
SELECT station_id, region, medium, window_start AS h_start, window_end AS h_end, window_time AS h_time,
       {hourly}
FROM TABLE(TUMBLE(TABLE station_minutes, DESCRIPTOR(s_time), INTERVAL '1' HOUR))
GROUP BY station_id, region, medium, window_start, window_end, window_time"""
    o3 = _valid("o3")
    eight = f"""
CREATE TEMPORARY VIEW clock_o3_8h AS
SELECT station_id, region, medium, h_start, h_end, h_time, {hour_cols},
       SUM({o3}) OVER w / COUNT({o3}) OVER w AS o3_8h_mean, COUNT({o3}) OVER w AS o3_8h_hours
FROM clock_hours
{_over(8)}"""
    valid_8h = f"CASE WHEN o3_8h_hours >= {MIN_O3_8H_HOURS} THEN o3_8h_mean END"
    eight_max = f"""
CREATE TEMPORARY VIEW clock_o3_max AS
SELECT station_id, region, medium, h_start, h_end, h_time, {hour_cols}, o3_8h_mean, o3_8h_hours,
       MAX({valid_8h}) OVER w AS o3_8h_max, COUNT({valid_8h}) OVER w AS o3_8h_max_means
FROM clock_o3_8h
{_over(O3_8H_MAX_WINDOW_H)}"""
    daily = ",\n       ".join(
        f"SUM({_valid(p)}) OVER w / COUNT({_valid(p)}) OVER w AS {p}_24h_mean, COUNT({_valid(p)}) OVER w AS {p}_24h_hours"
        for p in parameters
    )
    days = f"""
CREATE TEMPORARY VIEW clock_days AS
SELECT station_id, region, medium, h_start, h_end, h_time, {hour_cols}, o3_8h_mean, o3_8h_hours, o3_8h_max, o3_8h_max_means,
       {daily},
       MAX({o3}) OVER w AS o3_1h_max
FROM clock_o3_max
{_over(24)}"""
    return hours, eight, eight_max, days


def clock_hour_columns(parameters: tuple[str, ...]) -> list[tuple[str, str]]:
    """(name, Flink type) of the jw.station_clock_hour.v1 value columns, in sink order."""
    cols: list[tuple[str, str]] = []
    for p in parameters:
        cols += [(f"{p}_mean", "DOUBLE"), (f"{p}_minutes", "BIGINT"), (f"{p}_24h_mean", "DOUBLE"), (f"{p}_24h_hours", "BIGINT")]
    return cols + [("o3_8h_mean", "DOUBLE"), ("o3_8h_hours", "BIGINT"), ("o3_1h_max", "DOUBLE"),
                   ("o3_8h_max", "DOUBLE"), ("o3_8h_max_means", "BIGINT")]


def _station_clock_hours_sink(opts: JobOptions, parameters: tuple[str, ...]) -> str:
    return _station_sink(opts, "station_clock_hours_sink", STATION_CLOCK_HOURS, clock_hour_columns(parameters))


def _insert_station_minutes(parameters: tuple[str, ...]) -> str:
    cols = ", ".join(f"`{c}`" for c, _ in station_minute_columns(parameters))
    return f"""
INSERT INTO station_minutes_sink
SELECT 'jw.station_minute.v1', station_id, region, medium, minute_ms - 60000, minute_ms, {cols}
FROM station_minutes"""


def _insert_station_clock_hours(parameters: tuple[str, ...]) -> str:
    cols = ", ".join(c for c, _ in clock_hour_columns(parameters))
    return f"""
INSERT INTO station_clock_hours_sink
SELECT 'jw.station_clock_hour.v1', station_id, region, medium, {_epoch_ms('h_start')}, {_epoch_ms('h_end')}, {cols}
FROM clock_days"""


def _mean(vsum: str, cnt: str, sin_sum: str, cos_sum: str) -> str:
    """The arithmetic mean, except for wind direction: the direction of the mean unit vector
    (the mean of 350 and 10 degrees is 0, not 180)."""
    direction = f"DEGREES(ATAN2({sin_sum}, {cos_sum})) + CASE WHEN {sin_sum} < 0 THEN 360 ELSE 0 END"  # ATAN2 is in (-180, 180]
    return f"CASE WHEN `parameter` = '{WIND_DIR}' THEN {direction} ELSE {vsum} / {cnt} END"


def _expected(opts: JobOptions, window_minutes: int) -> str:
    """Readings a station is expected to report in a window of `window_minutes` (DOUBLE: a device
    reporting every 5 min expects 0.2 per minute), from config/network.yaml's sampling_s."""
    by_interval: dict[int, list[str]] = defaultdict(list)
    for station, seconds in opts.sampling_s:
        if seconds != opts.default_sampling_s:
            by_interval[seconds].append(station)
    per = lambda seconds: f"CAST({window_minutes * 60 / seconds!r} AS DOUBLE)"  # noqa: E731
    cases = " ".join(f"WHEN station_id IN ({', '.join(map(_q, sorted(ids)))}) THEN {per(sec)}" for sec, ids in sorted(by_interval.items()))
    return f"CASE {cases} ELSE {per(opts.default_sampling_s)} END" if cases else per(opts.default_sampling_s)


def insert_minutes(opts: JobOptions) -> str:
    """First results (version 1) of the one-minute windows; completeness = count / expected, at most 1."""
    expected = _expected(opts, 1)
    return f"""
INSERT INTO aligned_sink
SELECT 'jw.aggregate.v3', station_id, region, medium, `parameter`, unit, '1m', {_epoch_ms('m_start')}, {_epoch_ms('m_end')},
       {_mean('vsum', 'cnt', 'sin_sum', 'cos_sum')}, vmin, vmax, cnt, dups, CAST(corrected AS BIGINT), CAST(1 AS BIGINT),
       {expected}, LEAST(CAST(1 AS DOUBLE), cnt / {expected}), CAST(1 AS BIGINT)
FROM minute_means"""


def insert_rolling(opts: JobOptions) -> str:
    """Rolling hours; completeness = minutes with data / 60 (GB 3095's validity counts minutes)."""
    return f"""
INSERT INTO rolling_sink
SELECT 'jw.aggregate.v3', station_id, region, medium, `parameter`, unit, '1h-rolling', {_epoch_ms('window_start')}, {_epoch_ms('window_end')},
       {_mean('mean', '1', 'sin_sum', 'cos_sum')}, vmin, vmax, cnt, dups, CAST(corrected AS BIGINT), minutes,
       {_expected(opts, 60)}, CAST(minutes AS DOUBLE) / 60, CAST(1 AS BIGINT)
FROM rolling_means"""


# --- revisions ------------------------------------------------------------------------------
#
# A reading of a minute that has already been emitted, but closed at most allowed_lateness ago,
# revises it: the minute is recomputed from its on-time distinct readings plus every late one,
# duplicates still counted once (smallest value of conflicting copies, as on time), and
# published with version = 1 + the late readings folded in, upserted by (station, parameter,
# window_start). Its final value is the one the minute would have had with every reading on
# time, whatever the arrival interleaving: which is what makes a replay agree.
# The on-time readings are held by an interval join, so its state is bounded in event time
# (the last allowed_lateness + 2 minutes of readings, cleaned by the watermark, no TTL); the
# late readings are rare, and only minutes that received one are recomputed. The join is keyed
# by station and minute only: a late reading brings along its station minute's kept readings
# of every parameter, and the parameters without a late reading are dropped again (HAVING).
# Keying by parameter as well meant a key and a cleanup timer per reading: 24-29k -> 31-39k
# readings/s with the coarser key (alternating tp.py runs, 2026-11-22).
def revision_views(opts: JobOptions) -> list[str]:
    reach = opts.allowed_lateness_min + 2  # minutes a kept reading stays joinable, past its minute
    return [
        f"""
CREATE TEMPORARY VIEW kept AS
SELECT station_id, region, medium, `parameter`, unit, {_epoch_ms('d_start')} AS minute_ms, d_time, reading_id, `value`, copies, corrected
FROM distinct_readings
WHERE valid""",
        f"""
CREATE TEMPORARY VIEW revisable AS
SELECT station_id, region, medium, `parameter`, unit, event_time - MOD(event_time, 60000) AS minute_ms, ts, reading_id, `value`,
       CASE WHEN clock_corrected THEN 1 ELSE 0 END AS corrected
FROM readings
WHERE status IN ('N', 'S') AND {_revisable(opts)}""",
        # each late reading brings the kept readings of its station minute along (the join), and itself
        f"""
CREATE TEMPORARY VIEW revision_rows AS
SELECT k.station_id, k.region, k.medium, k.`parameter`, k.unit, k.minute_ms, k.reading_id, k.`value`,
       k.copies AS on_time_copies, CAST(0 AS BIGINT) AS late_copies, k.corrected
FROM kept k JOIN revisable r
  ON k.station_id = r.station_id AND k.minute_ms = r.minute_ms
 AND r.ts BETWEEN k.d_time - INTERVAL '{reach}' MINUTE AND k.d_time + INTERVAL '{reach}' MINUTE
UNION ALL
SELECT station_id, region, medium, `parameter`, unit, minute_ms, reading_id, `value`, CAST(0 AS BIGINT), CAST(1 AS BIGINT), corrected
FROM revisable""",
        # per reading: a kept reading comes once per late reading of its minute, hence MAX
        """
CREATE TEMPORARY VIEW revised_readings AS
SELECT station_id, region, medium, `parameter`, unit, minute_ms, reading_id,
       MIN(`value`) AS `value`, MAX(on_time_copies) AS on_time_copies, SUM(late_copies) AS late_copies, MAX(corrected) AS corrected
FROM revision_rows
GROUP BY station_id, region, medium, `parameter`, unit, minute_ms, reading_id""",
    ]


def insert_revisions(opts: JobOptions) -> str:
    expected = _expected(opts, 1)
    return f"""
INSERT INTO revisions_sink
SELECT 'jw.aggregate.v3', station_id, MAX(region), MAX(medium), `parameter`, MAX(unit), '1m', minute_ms, minute_ms + 60000,
       {_mean('SUM(`value`)', 'COUNT(*)', 'SUM(SIN(RADIANS(`value`)))', 'SUM(COS(RADIANS(`value`)))')},
       MIN(`value`), MAX(`value`), COUNT(*), SUM(on_time_copies) + SUM(late_copies) - COUNT(*),
       CAST(SUM(corrected) AS BIGINT), CAST(1 AS BIGINT), {expected}, LEAST(CAST(1 AS DOUBLE), COUNT(*) / {expected}), 1 + SUM(late_copies)
FROM revised_readings
GROUP BY station_id, `parameter`, minute_ms  -- the sink's key (region, medium and unit follow the station and parameter)
HAVING SUM(late_copies) > 0  -- parameters that came along with another's late reading"""


OUTPUTS = ("late", "aligned", "revisions", "rolling", "station_hours", "station_clock_hours", "station_minutes")
# The per-parameter rolling hour (jw.readings.rolling1h) is opt-in: it writes as many records
# as the one-minute output and cost ~40% of the job's throughput (17k -> 30k readings/s
# without it, bench 2026-11-22); station_hours carries the same rolling means of every
# index parameter, and the sink stores those.
# station_minutes (calibrated, QC-flagged, with provenance) exists only when the job calibrates.
DEFAULT_OUTPUTS = ("late", "aligned", "revisions", "station_hours", "station_clock_hours", "station_minutes")


def statements(opts: JobOptions, outputs: tuple[str, ...] = DEFAULT_OUTPUTS) -> tuple[list[str], list[str]]:
    """(DDL and views to execute first, INSERTs to run together as one job) for the chosen outputs."""
    ddl = [source_ddl(opts), *sink_ddls(opts), on_time_view(), DISTINCT_VIEW, MINUTE_VIEW, ROLLING_VIEW, *revision_views(opts),
           *_station_views(INDEX_PARAMETERS, opts.calibrate), *_clock_views(INDEX_PARAMETERS)]
    inserts = {
        "late": insert_late(opts),
        "aligned": insert_minutes(opts),
        "revisions": insert_revisions(opts),
        "rolling": insert_rolling(opts),
        "station_hours": _insert_station_hours(INDEX_PARAMETERS),
        "station_clock_hours": _insert_station_clock_hours(INDEX_PARAMETERS),
        "station_minutes": _insert_station_minutes(INDEX_PARAMETERS),
    }
    unknown = set(outputs) - set(inserts)
    if unknown or not outputs:
        raise ValueError(f"outputs must be a non-empty subset of {OUTPUTS}, got {outputs}")
    # Without allowed lateness nothing can revise: no revision branch at all, so no join holding
    # every reading (alternating tp.py runs on a loaded machine: 32-34k readings/s without it, 19-30k with it).
    chosen = [o for o in OUTPUTS if o in outputs and not (o == "revisions" and opts.allowed_lateness_min == 0)
              and not (o == "station_minutes" and not opts.calibrate)]
    return ddl, [inserts[o] for o in chosen]
