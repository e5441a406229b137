"""Unit tests of jobs/sql.py, the pure builders of the job's Flink SQL.

Where the SQL is standard (CASE, LAG ... OVER, WHERE), the generated text is
executed in SQLite, so these tests check what the statements *do*, not only how
they look; Flink-only functions are stubbed with their Flink meaning.
"""

from __future__ import annotations

import math
import re
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.sql import (
    MINUTE_VIEW,
    ROLLING_VIEW,
    JobOptions,
    insert_alerts,
    sink_ddls,
    source_ddl,
    statements,
    tier_case,
)
from jobs.tier_rules import Thresholds, TierRules, load_tier_rules, tier_of
from schemas.topics import ALERTS, READINGS_ALIGNED, READINGS_HOURLY, READINGS_LATE, READINGS_RAW, STATION_HOURS, Topic
from jointwatch.settings import REPO_ROOT

RULES = load_tier_rules(REPO_ROOT / "config" / "tiers.yaml")
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
        "alerts_sink": ALERTS, "station_hours_sink": STATION_HOURS,
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
        assert len(produced) == 6 and all(unquote(t).startswith(prefix) for t in produced), produced


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
    # rolling_means.window_time (what the alert LAG orders by) is the minute's event time:
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

    rules = TierRules("rule'1", 3, 45, {"p'q": Thresholds(1.0, 2.0)})
    alerts = insert_alerts(rules)
    assert "'rule''1'" in alerts and "'rule'1'" not in alerts
    assert "`parameter` IN ('p''q')" in alerts
    # The escaped literal really matches the quoted parameter name.
    assert evaluate_tier(rules, "p'q", 1.5) == ("yellow", 1.0)
    assert evaluate_tier(rules, "p'q", 2.5) == ("red", 2.0)


# --- the tier rule ---------------------------------------------------------------------

WHEN = re.compile(r"WHEN `parameter` = " + SQL_STRING + r" AND mean (>=|>|<=|<|=) (\S+) THEN '(\w+)'")


def test_tier_case_checks_red_before_yellow_for_every_parameter() -> None:
    tier_sql, _ = tier_case(RULES, "mean")
    whens = [(unquote(p), op, float(v), tier) for p, op, v, tier in WHEN.findall(tier_sql)]
    assert {p for p, *_ in whens} == set(RULES.thresholds)
    assert len(whens) == 2 * len(RULES.thresholds), tier_sql
    for param, t in RULES.thresholds.items():
        mine = [(i, op, v, tier) for i, (p, op, v, tier) in enumerate(whens) if p == param]
        assert [tier for *_, tier in mine] == ["red", "yellow"], f"{param}: red must be tested before yellow"
        (_, op_r, v_r, _), (_, op_y, v_y, _) = mine
        assert (op_r, v_r, op_y, v_y) == (">", t.red, ">", t.yellow), f"{param}: strictly above the thresholds"
    assert tier_sql.rstrip().endswith("ELSE 'green' END")


def evaluate_tier(rules: TierRules, parameter: str, mean: float) -> tuple[str, float | None]:
    """Run the generated (tier, threshold) CASE expressions in SQLite."""
    tier_sql, threshold_sql = tier_case(rules, "mean")
    with sqlite3.connect(":memory:") as db:
        row = db.execute(f"SELECT {tier_sql}, {threshold_sql} FROM (SELECT ? AS `parameter`, ? AS mean)", (parameter, mean)).fetchone()
    return row[0], row[1]


def probe_values(t: Thresholds) -> list[float]:
    inf = math.inf
    return [
        -1.0, 0.0,
        math.nextafter(t.yellow, -inf), t.yellow, math.nextafter(t.yellow, inf),
        (t.yellow + t.red) / 2,
        math.nextafter(t.red, -inf), t.red, math.nextafter(t.red, inf),
        t.red * 10 + 1,
    ]


@pytest.mark.parametrize("parameter", sorted(RULES.thresholds))
def test_tier_case_matches_tier_of_at_and_around_thresholds(parameter: str) -> None:
    t = RULES.thresholds[parameter]
    for mean in probe_values(t):
        tier, threshold = evaluate_tier(RULES, parameter, mean)
        assert tier == tier_of(RULES, parameter, mean), f"{parameter} mean={mean!r}"
        assert threshold == {"green": None, "yellow": t.yellow, "red": t.red}[tier], f"{parameter} mean={mean!r}"
    # at exactly the threshold the tier is not yet entered
    assert evaluate_tier(RULES, parameter, t.yellow)[0] == "green"
    assert evaluate_tier(RULES, parameter, t.red)[0] == "yellow"


def test_parameter_without_rule_is_green() -> None:
    assert evaluate_tier(RULES, "temp", 1e9) == ("green", None)
    assert evaluate_tier(RULES, "PM25", 1e9) == ("green", None)  # names are case-sensitive, as in tier_of
    assert tier_of(RULES, "PM25", 1e9) == "green"


# Concentrations, at the resolution instruments report: SQLite (the stand-in engine here)
# misparses literals near the double underflow range, which no threshold ever is.
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False).map(lambda v: round(v, 9))


@settings(max_examples=200, deadline=None)
@given(
    yellow=finite,
    gap=st.floats(min_value=1e-9, max_value=1e6, allow_nan=False),
    mean=finite,
    parameter=st.sampled_from(["pm25", "nh3n", "o'3"]),
)
def test_tier_case_equals_tier_of_for_any_thresholds(yellow: float, gap: float, mean: float, parameter: str) -> None:
    red = yellow + gap
    if not yellow < red:
        return
    rules = TierRules("r", 1, 45, {parameter: Thresholds(yellow, red), "other": Thresholds(0.0, 1.0)})
    for value in (mean, yellow, red):
        assert evaluate_tier(rules, parameter, value)[0] == tier_of(rules, parameter, value)


# --- tier transitions (the alerts INSERT) ---------------------------------------------------


def test_alerts_insert_uses_lag_over_event_time_per_station_and_parameter() -> None:
    sql = insert_alerts(RULES)
    assert re.match(r"\s*INSERT INTO alerts_sink\b", sql)
    m = re.search(r"LAG\(tier, 1, 'green'\) OVER \(PARTITION BY ([^)]*?) ORDER BY (\w+)\) AS previous_tier", sql)
    assert m, sql
    assert {c.strip() for c in m.group(1).split(",")} == {"station_id", "`parameter`"}
    assert m.group(2) == "window_time"  # the rolling window's event time, never processing time
    assert "PROCTIME" not in sql.upper() and "CURRENT_TIMESTAMP" not in sql.upper()
    assert re.search(r"\)\s*WHERE tier <> previous_tier\s*$", sql), "the outermost filter must keep tier changes only"
    assert re.search(rf"WHERE minutes >= {RULES.min_minutes} AND `parameter` IN \(", sql)


class _Flink:
    """Flink's DATE_FORMAT / UNIX_TIMESTAMP for the values used here (UTC session zone)."""

    @staticmethod
    def date_format(ts: str, fmt: str) -> str:
        assert fmt == "yyyy-MM-dd HH:mm:ss"
        return ts

    @staticmethod
    def unix_timestamp(s: str) -> int:
        return int(datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp())


def run_transitions(rules: TierRules, windows: list[tuple[str, str, datetime, float, int]]) -> list[tuple]:
    """Feed rolling-hour rows (station, parameter, window end, mean, minutes) through the
    SELECT of insert_alerts, executed in SQLite; returns the emitted transitions."""
    sql = insert_alerts(rules)
    start = sql.index("\nFROM (")
    query = "SELECT station_id, `parameter`, window_end_ms, tier, previous_tier, threshold, mean" + sql[start:]
    with sqlite3.connect(":memory:") as db:
        db.create_function("DATE_FORMAT", 2, _Flink.date_format, deterministic=True)
        db.create_function("UNIX_TIMESTAMP", 1, _Flink.unix_timestamp, deterministic=True)
        db.execute(
            "CREATE TABLE rolling_means (station_id, region, medium, `parameter`, unit, mean, minutes, window_start, window_end, window_time)"
        )
        for station, param, end, mean, minutes in windows:
            iso = lambda d: d.strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
            db.execute(
                "INSERT INTO rolling_means VALUES (?, 'north', 'air', ?, 'ug/m3', ?, ?, ?, ?, ?)",
                (station, param, mean, minutes, iso(end - timedelta(hours=1)), iso(end), iso(end - timedelta(milliseconds=1))),
            )
        return sorted(db.execute(query).fetchall())


def expected_transitions(rules: TierRules, windows: list[tuple[str, str, datetime, float, int]]) -> list[tuple]:
    out = []
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    for station, param, end, mean, minutes in windows:
        if minutes >= rules.min_minutes and param in rules.thresholds:
            series.setdefault((station, param), []).append((end, mean))
    for (station, param), points in series.items():
        previous = "green"
        for end, mean in sorted(points):
            tier = tier_of(rules, param, mean)
            if tier != previous:
                t = rules.thresholds[param]
                threshold = {"green": None, "yellow": t.yellow, "red": t.red}[tier]
                out.append((station, param, int(end.timestamp()) * 1000, tier, previous, threshold, mean))
            previous = tier
    return sorted(out)


def test_alerts_emit_only_tier_changes_in_event_time_order_per_station_and_parameter() -> None:
    t0 = datetime(2025, 3, 1, 8, 0, tzinfo=timezone.utc)
    m = lambda k: t0 + timedelta(minutes=k)  # noqa: E731
    pm25 = RULES.thresholds["pm25"]
    windows = [
        # station A pm25: green, green, yellow, yellow, red, yellow, green -- inserted out of order
        ("A", "pm25", m(6), pm25.yellow - 1, 60),  # yellow -> green
        ("A", "pm25", m(0), pm25.yellow - 5, 60),
        ("A", "pm25", m(2), pm25.yellow + 1, 60),  # green -> yellow
        ("A", "pm25", m(1), pm25.yellow, 60),  # exactly at the threshold: still green
        ("A", "pm25", m(4), pm25.red + 1, 60),  # yellow -> red
        ("A", "pm25", m(3), pm25.yellow + 2, 60),
        ("A", "pm25", m(5), pm25.red, 60),  # red -> yellow (at red is yellow)
        # station A pm10 interleaved: its own history, does not reset pm25's
        ("A", "pm10", m(1), 999.0, 60),  # green -> red directly
        ("A", "pm10", m(3), 999.0, 60),
        # station B pm25: first window already yellow; an incomplete window is ignored
        ("B", "pm25", m(0), pm25.yellow + 3, 60),
        ("B", "pm25", m(1), pm25.red + 50, RULES.min_minutes - 1),  # too few minutes: no alert, no state
        ("B", "pm25", m(2), pm25.yellow + 4, RULES.min_minutes),
        # a parameter without a rule never alerts
        ("B", "temp", m(0), 1e6, 60),
    ]
    got = run_transitions(RULES, windows)
    assert got == expected_transitions(RULES, windows)
    assert sorted((s, p, tier, prev) for s, p, _, tier, prev, *_ in got) == sorted(
        [
            ("A", "pm10", "red", "green"),
            ("A", "pm25", "yellow", "green"),
            ("A", "pm25", "red", "yellow"),
            ("A", "pm25", "yellow", "red"),
            ("A", "pm25", "green", "yellow"),
            ("B", "pm25", "yellow", "green"),
        ]
    )
    a_pm25 = [(end, prev, tier) for s, p, end, tier, prev, *_ in got if (s, p) == ("A", "pm25")]
    assert [(prev, tier) for _, prev, tier in sorted(a_pm25)] == [("green", "yellow"), ("yellow", "red"), ("red", "yellow"), ("yellow", "green")]


def test_statements_create_every_table_before_the_inserts_that_use_them() -> None:
    ddl, inserts = statements(JobOptions(bootstrap="b:1", namespace="x"), RULES)
    created = [m.group(1) for d in ddl for m in [re.search(r"CREATE (?:TEMPORARY VIEW|TABLE) (\w+)", d)] if m]
    assert created == [
        "readings", "late_sink", "aligned_sink", "rolling_sink", "alerts_sink", "station_hours_sink",
        "on_time", "minute_means", "rolling_means", "station_minutes", "station_hours",
    ]
    targets = [re.match(r"\s*INSERT INTO (\w+)", i).group(1) for i in inserts]
    assert sorted(targets) == sorted(["late_sink", "aligned_sink", "rolling_sink", "station_hours_sink", "alerts_sink"])


def test_late_readings_are_split_off_with_the_complementary_predicate() -> None:
    from jobs.sql import INSERT_LATE, ON_TIME_VIEW

    assert "CURRENT_WATERMARK(ts) IS NULL OR ts > CURRENT_WATERMARK(ts)" in ON_TIME_VIEW
    assert re.search(r"WHERE ts <= CURRENT_WATERMARK\(ts\)\s*$", INSERT_LATE)
    assert "'behind_watermark'" in INSERT_LATE
