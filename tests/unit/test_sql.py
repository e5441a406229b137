"""Unit tests of jobs/sql.py, the pure builders of the job's Flink SQL.

Where the SQL is standard (CASE, LAG ... OVER, WHERE), the generated text is
executed in SQLite, so these tests check what the statements *do*, not only how
they look; Flink-only functions are stubbed with their Flink meaning.
"""

from __future__ import annotations

import re

import pytest

from jobs.sql import (
    MINUTE_VIEW,
    ROLLING_VIEW,
    JobOptions,
    sink_ddls,
    source_ddl,
    statements,
)
from schemas.topics import READINGS_ALIGNED, READINGS_HOURLY, READINGS_LATE, READINGS_RAW, STATION_HOURS, Topic
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
        "station_hours_sink": STATION_HOURS,
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
        assert len(produced) == 5 and all(unquote(t).startswith(prefix) for t in produced), produced


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
    assert re.search(r"TUMBLE\(TABLE on_time, DESCRIPTOR\(ts\)", MINUTE_VIEW)
    assert re.search(r"window_time AS m_time", MINUTE_VIEW)
    # rolling_means.window_time (what downstream event-time operators would order by) is the minute's event time:
    # either a HOP window over m_time, or an OVER window ordered by m_time that passes it on.
    hop = re.search(r"HOP\(TABLE minute_means, DESCRIPTOR\(m_time\)", ROLLING_VIEW) and re.search(
        r"SELECT[^;]*\bwindow_time\b[^;]*FROM TABLE\(HOP", ROLLING_VIEW, re.S
    )
    over = re.search(r"\bm_time AS window_time\b", ROLLING_VIEW)
    assert hop or over, ROLLING_VIEW
    assert all(col == "m_time" for col in re.findall(r"ORDER BY (\w+)", ROLLING_VIEW)), ROLLING_VIEW


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


def test_statements_create_every_table_before_the_inserts_that_use_them() -> None:
    ddl, inserts = statements(JobOptions(bootstrap="b:1", namespace="x"))
    created = [m.group(1) for d in ddl for m in [re.search(r"CREATE (?:TEMPORARY VIEW|TABLE) (\w+)", d)] if m]
    assert created == [
        "readings", "late_sink", "aligned_sink", "rolling_sink", "station_hours_sink",
        "on_time", "minute_means", "rolling_means", "station_minutes", "station_hours",
    ]
    targets = [re.match(r"\s*INSERT INTO (\w+)", i).group(1) for i in inserts]
    assert sorted(targets) == sorted(["late_sink", "aligned_sink", "rolling_sink", "station_hours_sink"])
    assert "alert" not in "\n".join(ddl + inserts).lower(), "the job makes no alerts (the alert stage does)"


def test_late_readings_are_split_off_with_the_complementary_predicate() -> None:
    from jobs.sql import INSERT_LATE, ON_TIME_VIEW

    assert "CURRENT_WATERMARK(ts) IS NULL OR ts > CURRENT_WATERMARK(ts)" in ON_TIME_VIEW
    assert re.search(r"WHERE ts <= CURRENT_WATERMARK\(ts\)\s*$", INSERT_LATE)
    assert "'behind_watermark'" in INSERT_LATE
