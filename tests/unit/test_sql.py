"""Unit tests of jobs/sql.py, the pure builders of the job's Flink SQL.

Where the SQL is standard (CASE, LAG ... OVER, WHERE), the generated text is
executed in SQLite, so these tests check what the statements *do*, not only how
they look; Flink-only functions are stubbed with their Flink meaning.
"""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import replace
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from jobs.sql import (
    DISTINCT_VIEW,
    MINUTE_VIEW,
    DEFAULT_OUTPUTS,
    OUTPUTS,
    ROLLING_VIEW,
    JobOptions,
    _expected,
    clock_hour_columns,
    insert_late,
    insert_minutes,
    insert_revisions,
    sink_ddls,
    source_ddl,
    statements,
)
from jobs.validity import INDEX_PARAMETERS, MIN_MINUTES, MIN_O3_8H_HOURS
from schemas.models import schema, validation_errors
from schemas.topics import READINGS_ALIGNED, READINGS_HOURLY, READINGS_LATE, READINGS_RAW, STATION_CLOCK_HOURS, STATION_HOURS, STATION_MINUTES, Topic

SQL_STRING = r"'((?:[^']|'')*)'"  # a SQL string literal; '' is an escaped quote


def unquote(body: str) -> str:
    return body.replace("''", "'")


def with_option(sql: str, key: str) -> str:
    """The value of `'key' = '...'` in a WITH clause, unescaped; fails if absent or malformed."""
    m = re.search(rf"'{re.escape(key)}'\s*=\s*{SQL_STRING}\s*(?:,|\n|\))", sql)
    assert m, f"option {key!r} missing or not a well-formed SQL string in:\n{sql}"
    return unquote(m.group(1))


def table_ddl(ddls: list[str], name: str) -> str:
    found = [d for d in ddls if re.search(rf"CREATE TABLE {name}\b", d)]
    assert len(found) == 1, f"expected one CREATE TABLE {name}, got {len(found)}"
    return found[0]


# --- topics and connector options -----------------------------------------------------


@pytest.mark.parametrize("namespace", ["", "t0a1b2c3", "replay-2025.north"])
def test_ddl_uses_namespaced_topics(namespace: str) -> None:
    opts = JobOptions(bootstrap="10.0.0.5:9092,10.0.0.6:9092", namespace=namespace)
    prefix = f"{namespace}." if namespace else ""
    assert with_option(source_ddl(opts), "topic") == prefix + READINGS_RAW.name
    sinks = sink_ddls(opts)
    expected: dict[str, Topic] = {
        "late_sink": READINGS_LATE, "aligned_sink": READINGS_ALIGNED, "rolling_sink": READINGS_HOURLY,
        "station_hours_sink": STATION_HOURS, "station_clock_hours_sink": STATION_CLOCK_HOURS, "station_minutes_sink": STATION_MINUTES,
    }
    for table, topic in expected.items():
        ddl = table_ddl(sinks, table)
        assert with_option(ddl, "topic") == prefix + topic.name
        assert with_option(ddl, "properties.bootstrap.servers") == "10.0.0.5:9092,10.0.0.6:9092"
        key = with_option(ddl, "key.fields")
        assert key == topic.key
        assert re.search(rf"^\s*`?{key}`?\s+STRING,", ddl, re.M), f"{table}: key column {key} not declared as STRING"
    if namespace:  # nothing may still point at a production topic
        every = "\n".join([source_ddl(opts), *sinks])
        produced = re.findall(rf"'topic'\s*=\s*{SQL_STRING}", every)
        assert len(produced) == 8 and all(unquote(t).startswith(prefix) for t in produced), produced


def test_source_options_come_from_job_options() -> None:
    opts = JobOptions(bootstrap="b:1", namespace="ns", group_id="g-analyst", out_of_orderness_s=45, source_idle_s=7, startup_mode="earliest-offset")
    ddl = source_ddl(opts)
    assert re.search(r"WATERMARK FOR ts AS ts - INTERVAL '45' SECOND", ddl), ddl
    assert with_option(ddl, "scan.watermark.idle-timeout") == "7 s"
    assert with_option(ddl, "scan.startup.mode") == "earliest-offset"
    assert with_option(ddl, "properties.group.id") == "g-analyst"
    # ... and change when the options change (not constants that happen to match the defaults)
    other = source_ddl(JobOptions(bootstrap="b:1"))
    assert "INTERVAL '30' SECOND" in other and "INTERVAL '45' SECOND" not in other
    assert with_option(other, "scan.watermark.idle-timeout") == "30 s"
    assert with_option(other, "scan.startup.mode") == "group-offsets"
    assert with_option(other, "properties.group.id") == "jw-align"


def test_event_time_is_the_watermarked_reading_time_through_both_views() -> None:
    ddl = source_ddl(JobOptions(bootstrap="b:1"))
    assert re.search(r"ts AS TO_TIMESTAMP_LTZ\(event_time, 3\)", ddl)
    assert re.search(r"WATERMARK FOR ts\b", ddl)
    assert re.search(r"TUMBLE\(TABLE on_time, DESCRIPTOR\(ts\)", DISTINCT_VIEW)
    assert re.search(r"window_time AS d_time", DISTINCT_VIEW)
    assert re.search(r"TUMBLE\(TABLE distinct_readings, DESCRIPTOR\(d_time\)", MINUTE_VIEW)
    assert re.search(r"window_time AS m_time", MINUTE_VIEW)
    # rolling_means.window_time (what downstream event-time operators would order by) is the minute's event time:
    # either a HOP window over m_time, or an OVER window ordered by m_time that passes it on.
    hop = re.search(r"HOP\(TABLE minute_means, DESCRIPTOR\(m_time\)", ROLLING_VIEW) and re.search(
        r"SELECT[^;]*\bwindow_time\b[^;]*FROM TABLE\(HOP", ROLLING_VIEW, re.S
    )
    over = re.search(r"\bm_time AS window_time\b", ROLLING_VIEW)
    assert hop or over, ROLLING_VIEW
    assert all(col == "m_time" for col in re.findall(r"ORDER BY (\w+)", ROLLING_VIEW)), ROLLING_VIEW


def test_duplicates_count_once_per_reading_id() -> None:
    group = re.search(r"GROUP BY (.*)$", DISTINCT_VIEW).group(1)
    assert [c.strip() for c in group.split(",")][-1] == "reading_id" and "station_id" in group and "`parameter`" in group
    assert "COUNT(*) AS copies" in DISTINCT_VIEW and "MIN(`value`) AS `value`" in DISTINCT_VIEW
    # validity is part of the key, so copies are counted among the valid ones, and only those are averaged
    assert "status IN ('N', 'S') AS valid" in DISTINCT_VIEW and "status IN ('N', 'S'), reading_id" in group and "WHERE valid" in MINUTE_VIEW
    assert "COUNT(*) AS cnt, SUM(copies) - COUNT(*) AS dups, SUM(corrected) AS corrected" in MINUTE_VIEW
    assert "SUM(dups) OVER w AS dups" in ROLLING_VIEW


def test_quotes_in_values_are_escaped() -> None:
    opts = JobOptions(bootstrap="h'1:9092", namespace="o'brien", group_id="g'x")
    src = source_ddl(opts)
    assert with_option(src, "topic") == "o'brien.jw.readings.raw"
    assert with_option(src, "properties.bootstrap.servers") == "h'1:9092"
    assert with_option(src, "properties.group.id") == "g'x"
    assert "'o'brien" not in src and "'g'x'" not in src
    for ddl in sink_ddls(opts):
        assert with_option(ddl, "topic").startswith("o'brien.jw.")
        assert with_option(ddl, "properties.bootstrap.servers") == "h'1:9092"


# --- statements --------------------------------------------------------------------------------


def test_statements_create_every_table_before_the_inserts_that_use_them() -> None:
    ddl, inserts = statements(JobOptions(bootstrap="b:1", namespace="x"))
    created = [m.group(1) for d in ddl for m in [re.search(r"CREATE (?:TEMPORARY VIEW|TABLE) (\w+)", d)] if m]
    assert created == [
        "readings", "late_sink", "aligned_sink", "revisions_sink", "rolling_sink", "station_hours_sink", "station_clock_hours_sink",
        "station_minutes_sink",
        "on_time", "distinct_readings", "minute_means", "rolling_means", "kept", "revisable", "revision_rows", "revised_readings",
        "station_minutes_raw", "minutes_called", "minutes_calibrated", "qc_frame_2", "qc_frame_30", "qc_frame_240", "station_minutes", "station_hours",
        "clock_hours", "clock_o3_8h", "clock_o3_max", "clock_days",
    ]
    targets = [re.match(r"\s*INSERT INTO (\w+)", i).group(1) for i in inserts]
    assert targets == ["late_sink", "aligned_sink", "revisions_sink", "station_hours_sink", "station_clock_hours_sink",
                       "station_minutes_sink"]  # rolling is opt-in
    uncalibrated, _ = statements(JobOptions(bootstrap="b:1", calibrate=False), DEFAULT_OUTPUTS)
    assert "jw_calibrate" not in "\n".join(uncalibrated) and "station_minutes_raw" not in "\n".join(uncalibrated)
    _, every_insert = statements(JobOptions(bootstrap="b:1"), OUTPUTS)
    assert [re.match(r"\s*INSERT INTO (\w+)", i).group(1) for i in every_insert][3] == "rolling_sink"
    every = "\n".join(ddl + inserts)
    assert "alert" not in every.lower(), "the job makes no alerts any more (the alert stage does)"
    assert "PROCTIME" not in every.upper() and "CURRENT_TIMESTAMP" not in every.upper()


def test_outputs_choose_the_inserts_and_reject_unknown_names() -> None:
    assert "alerts" not in OUTPUTS
    _, only = statements(JobOptions(bootstrap="b:1"), ("station_clock_hours",))
    assert len(only) == 1 and re.match(r"\s*INSERT INTO station_clock_hours_sink\b", only[0])
    for bad in ((), ("alerts",), ("late", "nope")):
        with pytest.raises(ValueError, match="outputs must be"):
            statements(JobOptions(bootstrap="b:1"), bad)


def views(opts: JobOptions | None = None) -> dict[str, str]:
    # Without calibration: its views call a Python UDF and PERCENTILE, which SQLite lacks;
    # tests/integration/test_calibration_job.py checks them on Flink against the library.
    ddl, _ = statements(replace(opts or JobOptions(bootstrap="b:1"), calibrate=False))
    return {m.group(1): d for d in ddl for m in [re.search(r"CREATE TEMPORARY VIEW (\w+)", d)] if m}


def test_clock_windows_cascade_on_the_clock_hours_event_time_with_the_validity_rules() -> None:
    v = views()
    assert re.search(r"TUMBLE\(TABLE station_minutes, DESCRIPTOR\(s_time\), INTERVAL '1' HOUR\)", v["clock_hours"])
    assert "window_time AS h_time" in v["clock_hours"] and "window_end AS h_end" in v["clock_hours"]  # labelled by the end
    frames = {"clock_o3_8h": ("clock_hours", 7), "clock_o3_max": ("clock_o3_8h", 16), "clock_days": ("clock_o3_max", 23)}
    for view, (source, preceding) in frames.items():
        sql = v[view]
        assert re.search(rf"\bFROM {source}\b", sql), view
        windows = re.findall(r"PARTITION BY (\w+) ORDER BY (\w+) RANGE BETWEEN INTERVAL '(\d+)' HOUR PRECEDING AND CURRENT ROW", sql)
        assert windows == [("station_id", "h_time", str(preceding))], f"{view}: {windows}"
        assert re.search(r"\bh_time\b", sql.split("FROM")[0]), f"{view} must pass the time attribute on"
    # Only valid hours enter the long windows, only valid 8-h means the running max.
    assert f"CASE WHEN o3_minutes >= {MIN_MINUTES} THEN o3_mean END" in v["clock_o3_8h"]
    assert f"CASE WHEN o3_8h_hours >= {MIN_O3_8H_HOURS} THEN o3_8h_mean END" in v["clock_o3_max"]
    for p in INDEX_PARAMETERS:
        assert f"COUNT(CASE WHEN {p}_minutes >= {MIN_MINUTES} THEN {p}_mean END) OVER w AS {p}_24h_hours" in v["clock_days"]


def test_wind_direction_is_averaged_as_unit_vectors_of_wind_dir_readings_only() -> None:
    assert "SUM(CASE WHEN `parameter` = 'wind_dir' THEN SIN(RADIANS(`value`)) END) AS sin_sum" in MINUTE_VIEW
    assert "SUM(CASE WHEN `parameter` = 'wind_dir' THEN COS(RADIANS(`value`)) END) AS cos_sum" in MINUTE_VIEW
    hours = views()["station_hours"]
    assert "SUM(wind_dir_sin_sum) OVER w / SUM(wind_dir_cnt) OVER w AS wind_dir_sin_mean" in hours
    assert "SUM(wind_speed_sum) OVER w / SUM(wind_speed_cnt) OVER w AS wind_speed_mean" in hours


# --- sinks against their JSON Schemas --------------------------------------------------------------

def select_items(insert: str) -> list[str]:
    """The top-level items of an INSERT's SELECT list (commas inside calls and literals do not split)."""
    body = insert.split("SELECT", 1)[1].rsplit("\nFROM", 1)[0]
    items, depth, quoted, current = [], 0, False, ""
    for ch in body:
        quoted ^= ch == "'"
        depth += (ch == "(") - (ch == ")") if not quoted else 0
        if ch == "," and depth == 0 and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    return [*items, current.strip()]


COLUMN = re.compile(r"^\s+`?(\w+)`?\s+(STRING|DOUBLE|BIGINT|INT)\b", re.M)
SAMPLE = {"STRING": "x", "DOUBLE": 0.5, "BIGINT": 7, "INT": 7}


@pytest.mark.parametrize(("sink", "name"), [("station_hours_sink", "station_hour"), ("station_clock_hours_sink", "station_clock_hour")])
def test_station_sinks_write_what_their_schema_allows(sink: str, name: str) -> None:
    ddl, inserts = statements(JobOptions(bootstrap="b:1"))
    columns = COLUMN.findall(table_ddl(ddl, sink).split(") WITH (")[0])
    doc = schema(name)
    assert set(doc["required"]) <= {c for c, _ in columns}
    insert = next(i for i in inserts if f"INSERT INTO {sink}" in i)
    literal = re.search(r"SELECT '([\w.]+)'", insert).group(1)
    assert literal == doc["properties"]["schema"]["const"]
    record: dict[str, Any] = {c: SAMPLE[t] for c, t in columns} | {"schema": literal, "medium": "air"}
    assert validation_errors(name, record) == []
    nulls = {c: (None if t == "DOUBLE" else v) for (c, t), v in zip(columns, record.values())} | {"schema": literal, "medium": "air"}
    assert validation_errors(name, nulls) == []  # every mean may be null (no data)
    assert validation_errors(name, record | {"no_such_column": 1}) != []
    assert len(select_items(insert)) == len(columns), "the INSERT must fill every sink column"


def test_clock_hour_columns_cover_every_index_parameter_and_the_o3_windows() -> None:
    names = [c for c, _ in clock_hour_columns(INDEX_PARAMETERS)]
    assert len(names) == len(set(names))
    for p in INDEX_PARAMETERS:
        assert {f"{p}_mean", f"{p}_minutes", f"{p}_24h_mean", f"{p}_24h_hours"} <= set(names)
    assert {"o3_8h_mean", "o3_8h_hours", "o3_1h_max", "o3_8h_max", "o3_8h_max_means"} <= set(names)


# --- what the views compute: executed in SQLite against an independent numpy reference --------------
#
# SQLite has the same CASE / SUM / COUNT / MAX ... OVER (RANGE n PRECEDING) semantics. Stubbed with
# their Flink meaning: times are epoch-ms integers, INTERVAL literals are milliseconds, TUMBLE adds
# window_start / window_end / window_time (= end - 1 ms) columns, CURRENT_WATERMARK is NULL (nothing
# late). Event-time progress itself is checked on real Flink in tests/integration/test_station_windows.py.

UNIT_MS = {"SECOND": 1_000, "MINUTE": 60_000, "HOUR": 3_600_000}
TUMBLE = re.compile(r"TABLE\(TUMBLE\(TABLE (\w+), DESCRIPTOR\((\w+)\), INTERVAL '(\d+)' (SECOND|MINUTE|HOUR)\)\)")
HOUR, MINUTE = 3_600_000, 60_000
T0 = 1_795_000_000_000 // HOUR * HOUR  # a whole UTC hour (2026-11-18 10:00)


def as_sqlite(sql: str) -> str:
    def tumble(m: re.Match) -> str:
        table, col, n, unit = m.groups()
        size = int(n) * UNIT_MS[unit]
        start = f"({col} - {col} % {size})"
        return f"(SELECT *, {start} AS window_start, {start} + {size} AS window_end, {start} + {size} - 1 AS window_time FROM {table})"

    sql = TUMBLE.sub(tumble, sql)
    sql = re.sub(r"INTERVAL '([\d.]+)' (SECOND|MINUTE|HOUR)", lambda m: str(round(float(m.group(1)) * UNIT_MS[m.group(2)])), sql)
    sql = re.sub(r"CAST\(TIMESTAMPDIFF\(MINUTE, TIMESTAMP '1970-01-01 00:00:00', (\w+)\) AS BIGINT\)", r"(\1 / 60000)", sql)
    sql = re.sub(r"FLOOR\((CURRENT_WATERMARK\(ts\) \+ \d+) TO MINUTE\)", r"FLOOR_MINUTE(\1)", sql)
    return sql.replace("CURRENT_WATERMARK(ts)", "wm")


Reading = tuple[str, str, int, float, str]  # station, parameter, event time (ms), value, status


def run_views(readings: Iterable[Reading], late: Iterable[tuple[Reading, int]] = (), opts: JobOptions | None = None) -> sqlite3.Connection:
    """The views over `readings` (on time: CURRENT_WATERMARK is NULL) and `late` readings, each
    with the source's watermark when it arrived (the `wm` column stands in for CURRENT_WATERMARK)."""
    db = sqlite3.connect(":memory:")
    db.create_function("FLOOR_MINUTE", 1, lambda t: None if t is None else t - t % MINUTE, deterministic=True)
    db.create_function("MOD", 2, lambda a, b: a % b, deterministic=True)
    db.create_function("LEAST", 2, min, deterministic=True)
    db.execute("CREATE TABLE readings (station_id, region, medium, `parameter`, `value` REAL, unit, status, ts INTEGER, event_time INTEGER, "
               "reading_id, clock_corrected, wm INTEGER)")
    rows_in = [(r, None) for r in readings] + list(late)
    db.executemany(
        "INSERT INTO readings VALUES (?, 'north', ?, ?, ?, 'u', ?, ?, ?, ?, 0, ?)",
        [(s, "water" if p in ("nh3n", "do") else "air", p, v, status, t, t, f"{s}/{p}/{t}", wm) for (s, p, t, v, status), wm in rows_in],
    )
    for sql in views(opts).values():
        db.execute(as_sqlite(sql))
    return db


def rows(db: sqlite3.Connection, query: str) -> list[dict[str, Any]]:
    cur = db.execute(query)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def test_rolling_station_hour_carries_the_wind_of_the_hour() -> None:
    readings: list[Reading] = []
    for m in range(90):
        t = T0 + m * MINUTE + 7_000
        readings += [("a1", "pm25", t, 10.0 + m % 7, "N"), ("a1", "pm25", t + 1, 999.0, "F"),  # status F never counts
                     ("a1", "wind_dir", t, 350.0 if m % 2 else 10.0, "N"), ("a1", "wind_speed", t, 2.0 + m % 3, "N"),
                     ("w1", "nh3n", t, 0.5, "N")]
    db = run_views(readings)
    end = T0 + 90 * MINUTE
    [a1] = rows(db, f"SELECT * FROM station_hours WHERE station_id = 'a1' AND window_end = {end}")
    assert a1["window_start"] == end - HOUR
    minutes = range(30, 90)  # the readings of the 60 minutes ending at `end`
    assert a1["pm25_mean"] == pytest.approx(np.mean([10.0 + m % 7 for m in minutes]), rel=1e-12) and a1["pm25_minutes"] == 60
    assert a1["wind_speed_mean"] == pytest.approx(np.mean([2.0 + m % 3 for m in minutes]), rel=1e-12) and a1["wind_speed_minutes"] == 60
    assert a1["wind_dir_sin_mean"] == pytest.approx(0.0, abs=1e-12)  # 350 and 10 cancel east-west ...
    assert a1["wind_dir_cos_mean"] == pytest.approx(math.cos(math.radians(10.0)), rel=1e-12)  # ... and add up northward
    assert a1["wind_dir_minutes"] == 60
    [w1] = rows(db, f"SELECT * FROM station_hours WHERE station_id = 'w1' AND window_end = {end}")
    assert (w1["wind_dir_sin_mean"], w1["wind_dir_minutes"], w1["wind_speed_mean"], w1["nh3n_mean"]) == (None, 0, None, 0.5)


# Minutes with data per (parameter, hour) where not 60: the validity boundaries (45 valid, 44 not), short and
# empty hours, enough invalid O3 hours for an 8-h mean to fall below 6 and the 8-h max below 14 means.
PLAN = {("o3", 3): 44, ("o3", 4): 45, ("o3", 10): 20, ("o3", 11): 0, ("o3", 12): 44, ("pm25", 5): 20, ("pm25", 6): 0,
        ("pm25", 20): 44, ("pm25", 30): 45, ("pm25", 31): 10}


def synthetic_clock_readings(hours: int, seed: int = 5) -> tuple[list[Reading], dict[tuple[str, int], int]]:
    """Minute readings of o3 and pm25 for one station, at random seconds and values, as PLAN says; hour 9 has
    only fault-flagged O3 (never valid) and hour 17 no reading at all (no clock-hour record)."""
    rng = np.random.default_rng(seed)
    readings: list[Reading] = []
    plan: dict[tuple[str, int], int] = {}
    for h in range(hours):
        silent = h == 17
        for p in ("o3", "pm25"):
            n = 0 if silent else PLAN.get((p, h), 60)
            status = "F" if (p == "o3" and h == 9) else "N"
            plan[(p, h)] = n if status == "N" else 0
            for m in sorted(rng.choice(60, size=n, replace=False)):
                t = T0 + h * HOUR + int(m) * MINUTE + int(rng.integers(0, 59_000))
                base = 80.0 + 40.0 * math.sin(h / 4.0) if p == "o3" else 35.0 + 10.0 * math.cos(h / 3.0)
                readings.append(("a1", p, t, round(base + float(rng.normal(0, 8)), 3), status))
        if not silent:
            readings.append(("a1", "temp", T0 + h * HOUR + 30 * MINUTE, 5.0, "N"))  # a non-index parameter also makes a record
    return readings, plan


def clock_reference(readings: list[Reading], hours: int) -> dict[int, dict[str, Any]]:
    """Per clock hour end: the station_clock_hour values, straight from the definitions (GB 3095 Table 4)."""
    valid = [(p, t, v) for _, p, t, v, status in readings if status in ("N", "S")]
    one_h: dict[tuple[str, int], tuple[float, int]] = {}
    for p in ("o3", "pm25"):
        for h in range(hours):
            vals = [(t, v) for q, t, v in valid if q == p and T0 + h * HOUR <= t < T0 + (h + 1) * HOUR]
            if vals:
                one_h[(p, h)] = (float(np.mean([v for _, v in vals])), len({t // MINUTE for t, _ in vals}))
    recorded = sorted({(t - T0) // HOUR for _, t, _ in valid})

    def hourly(p: str, h: int) -> float:
        mean, minutes = one_h.get((p, h), (math.nan, 0))
        return mean if minutes >= 45 else math.nan

    def window(p: str, h: int, n: int) -> np.ndarray:
        return np.array([hourly(p, k) for k in range(h - n + 1, h + 1)])

    def mean_count(a: np.ndarray) -> tuple[float | None, int]:
        ok = a[~np.isnan(a)]
        return (float(ok.mean()) if ok.size else None), int(ok.size)

    eight = {h: mean_count(window("o3", h, 8)) for h in recorded}
    out = {}
    for h in recorded:
        row: dict[str, Any] = {}
        for p in ("o3", "pm25"):
            row[f"{p}_mean"], row[f"{p}_minutes"] = one_h.get((p, h), (None, 0))
            row[f"{p}_24h_mean"], row[f"{p}_24h_hours"] = mean_count(window(p, h, 24))
        row["o3_8h_mean"], row["o3_8h_hours"] = eight[h]
        day = window("o3", h, 24)
        row["o3_1h_max"] = float(np.nanmax(day)) if (~np.isnan(day)).any() else None
        maxima = [eight[k][0] for k in range(h - 16, h + 1) if k in eight and eight[k][1] >= 6]
        row["o3_8h_max"], row["o3_8h_max_means"] = (max(maxima) if maxima else None), len(maxima)
        out[T0 + (h + 1) * HOUR] = row
    return out


def test_clock_hour_8h_and_24h_windows_match_an_independent_reference() -> None:
    hours = 40
    readings, plan = synthetic_clock_readings(hours)
    assert {44, 45, 60} <= set(plan.values())  # the boundary cases are in the data
    got = {r["h_end"]: r for r in rows(run_views(readings), "SELECT * FROM clock_days WHERE station_id = 'a1'")}
    expected = clock_reference(readings, hours)
    assert sorted(got) == sorted(expected) and T0 + 18 * HOUR not in got  # the silent hour has no record
    for end, want in expected.items():
        have = got[end]
        assert have["h_start"] == end - HOUR and have["h_time"] == end - 1
        for col, value in want.items():
            if value is None or isinstance(value, int):
                assert have[col] == value, f"hour ending {(end - T0) // HOUR}: {col} {have[col]} != {value}"
            else:
                assert have[col] == pytest.approx(value, rel=1e-12), f"hour ending {(end - T0) // HOUR}: {col}"
        for p in INDEX_PARAMETERS:
            if p not in ("o3", "pm25"):  # parameters the station does not measure: no mean, zero counts
                assert (have[f"{p}_mean"], have[f"{p}_minutes"], have[f"{p}_24h_mean"], have[f"{p}_24h_hours"]) == (None, 0, None, 0)
    last = got[T0 + hours * HOUR]
    assert last["o3_24h_hours"] == sum(1 for h in range(hours - 24, hours) if plan[("o3", h)] >= 45)
    # Both sides of every rule occur: 8-h means with >= 6 and < 6 hours, 24-h means with >= 20 and < 20, 8-h maxima over >= 14 and < 14.
    for col, rule in (("o3_8h_hours", 6), ("pm25_24h_hours", 20), ("o3_24h_hours", 20), ("o3_8h_max_means", 14)):
        counts = {r[col] for r in got.values()}
        assert min(counts) < rule <= max(counts), (col, sorted(counts))


def test_resent_readings_count_once_and_are_reported_as_duplicates() -> None:
    readings: list[Reading] = []
    for m in range(3):
        t = T0 + m * MINUTE + 5_000
        readings += [("a1", "pm25", t, 10.0 + m, "N"), ("a1", "pm25", t + 20_000, 20.0 + m, "N")]
    readings += [("a1", "pm25", T0 + 5_000, 10.0, "N")] * 3  # a gateway re-sends minute 0's first reading three times
    readings += [("a1", "pm25", T0 + MINUTE + 25_000, 20.0, "N"), ("a1", "pm25", T0 + MINUTE + 25_000, 22.0, "N")]  # conflicting copies of 21.0
    readings += [("a1", "pm25", T0 + 2 * MINUTE + 5_000, 12.0, "F")]  # an invalid copy is not a duplicate of a valid reading
    db = run_views(readings)
    got = {r["m_start"]: (r["cnt"], r["dups"], r["vsum"]) for r in rows(db, "SELECT * FROM minute_means WHERE station_id = 'a1'")}
    assert got == {
        T0: (2, 3, 10.0 + 20.0),
        T0 + MINUTE: (2, 2, 11.0 + 20.0),  # one reading at +25 s, the smallest of its three values
        T0 + 2 * MINUTE: (2, 0, 12.0 + 22.0),
    }


def test_late_readings_revise_their_minute_as_if_they_had_been_on_time() -> None:
    opts = JobOptions(bootstrap="b:1", allowed_lateness_min=10)
    on_time = [("a1", "pm25", T0 + 5_000, 10.0, "N"), ("a1", "pm25", T0 + 25_000, 20.0, "N"), ("a1", "pm25", T0 + MINUTE + 5_000, 40.0, "N"),
               ("a1", "pm10", T0 + 5_000, 50.0, "N")]  # same station minute, nothing late: no revision of pm10
    late = [
        (("a1", "pm25", T0 + 35_000, 30.0, "N"), T0 + 3 * MINUTE),  # a new reading for minute 0, closed 2 min before
        (("a1", "pm25", T0 + 5_000, 8.0, "N"), T0 + 3 * MINUTE),  # a conflicting copy: the smaller value counts, as on time
        (("a1", "pm25", T0 + 5 * MINUTE + 10_000, 1.0, "N"), T0 + 7 * MINUTE),  # a minute that had nothing on time
        (("a1", "pm25", T0 + 5 * MINUTE + 40_000, 3.0, "N"), T0 + 7 * MINUTE),
        (("a1", "pm25", T0 + MINUTE + 10_000, 99.0, "N"), T0 + 20 * MINUTE),  # closed 19 min before: beyond the lateness
        (("a1", "pm25", T0 + 8 * MINUTE + 10_000, 7.0, "N"), T0 + 8 * MINUTE + 30_000),  # behind the watermark, its minute still open
        (("a1", "pm25", T0 + 6 * MINUTE, 5.0, "F"), T0 + 7 * MINUTE),  # an invalid status never counts
    ]
    db = run_views(on_time, late, opts)
    revised = rows(db, as_sqlite(insert_revisions(opts).split("INSERT INTO revisions_sink", 1)[1]).replace(
        "SELECT 'jw.aggregate.v3', station_id, MAX(region), MAX(medium), `parameter`, MAX(unit), '1m', minute_ms, minute_ms + 60000,",
        "SELECT station_id, minute_ms AS window_start,").replace("CASE WHEN `parameter` = 'wind_dir'", "(CASE WHEN `parameter` = 'wind_dir'", 1)
        .replace("ELSE SUM(`value`) / COUNT(*) END,", "ELSE SUM(`value`) / COUNT(*) END) AS mean,", 1)
        .replace("MIN(`value`), MAX(`value`), COUNT(*), SUM(on_time_copies) + SUM(late_copies) - COUNT(*),",
                 "MIN(`value`) AS vmin, MAX(`value`) AS vmax, COUNT(*) AS cnt, SUM(on_time_copies) + SUM(late_copies) - COUNT(*) AS dups,")
        .replace("1 + SUM(late_copies)", "1 + SUM(late_copies) AS version"))
    revisions = {r["window_start"]: r for r in revised}
    assert len(revised) == 2 and sorted(revisions) == [T0, T0 + 5 * MINUTE]
    m0, m5 = revisions[T0], revisions[T0 + 5 * MINUTE]
    assert (m0["cnt"], m0["dups"], m0["vmin"], m0["vmax"], m0["version"]) == (3, 1, 8.0, 30.0, 3)
    assert m0["mean"] == pytest.approx((8.0 + 20.0 + 30.0) / 3, rel=1e-12)
    assert (m5["cnt"], m5["dups"], m5["mean"], m5["version"]) == (2, 0, 2.0, 3)
    # the reading behind the watermark in a still-open minute went to the window itself
    minutes = {r["m_start"]: (r["cnt"], r["vsum"]) for r in rows(db, "SELECT * FROM minute_means WHERE `parameter` = 'pm25'")}
    assert minutes == {T0: (2, 30.0), T0 + MINUTE: (1, 40.0), T0 + 8 * MINUTE: (1, 7.0)}
    # and only the one beyond the allowed lateness is late
    where = insert_late(opts).rsplit("WHERE", 1)[1]
    assert [r["value"] for r in rows(db, as_sqlite(f"SELECT `value` FROM readings WHERE {where}"))] == [99.0]


def test_no_revisions_without_allowed_lateness() -> None:
    opts = JobOptions(bootstrap="b:1", allowed_lateness_min=0)
    _, inserts = statements(opts)
    assert not any("revisions_sink" in i for i in inserts)  # no revision branch at all (its join is the costly part)
    db = run_views([("a1", "pm25", T0 + 5_000, 10.0, "N")], [(("a1", "pm25", T0 + 35_000, 30.0, "N"), T0 + MINUTE)], opts)
    assert rows(db, "SELECT * FROM revisable") == []
    assert [r["value"] for r in rows(db, as_sqlite(f"SELECT `value` FROM readings WHERE {insert_late(opts).rsplit('WHERE', 1)[1]}"))] == [30.0]


def test_expected_counts_follow_each_station_s_sampling_interval() -> None:
    opts = JobOptions(bootstrap="b:1", sampling_s=(("a1", 10), ("a2", 60), ("w1", 300)))
    db = sqlite3.connect(":memory:")
    got = {sid: db.execute(f"SELECT {_expected(opts, 1)}, {_expected(opts, 60)} FROM (SELECT '{sid}' AS station_id)").fetchone()
           for sid in ("a1", "a2", "w1", "unlisted")}
    assert got == {"a1": (6.0, 360.0), "a2": (1.0, 60.0), "w1": (0.2, 12.0), "unlisted": (1.0, 60.0)}


def test_one_minute_wind_direction_is_the_direction_of_the_mean_unit_vector() -> None:
    opts = JobOptions(bootstrap="b:1")
    db = run_views([("a1", "wind_dir", T0 + 5_000, 350.0, "N"), ("a1", "wind_dir", T0 + 25_000, 30.0, "N"),
                    ("a1", "wind_dir", T0 + MINUTE + 5_000, 200.0, "N"), ("a1", "wind_dir", T0 + MINUTE + 25_000, 260.0, "N"),
                    ("a1", "pm25", T0 + 5_000, 350.0, "N"), ("a1", "pm25", T0 + 25_000, 30.0, "N")], opts=opts)
    select = insert_minutes(opts).split("INSERT INTO aligned_sink", 1)[1]
    got = {(r[4], r[7]): r[9] for r in db.execute(as_sqlite(select)).fetchall()}  # (parameter, window_start) -> mean
    assert got[("wind_dir", T0)] == pytest.approx(10.0)  # not 190, the arithmetic mean
    assert got[("wind_dir", T0 + MINUTE)] == pytest.approx(230.0)  # the mean in the south-west, not wrapped
    assert got[("pm25", T0)] == pytest.approx(190.0)  # any other parameter: the arithmetic mean
