"""Alerts name their origin (lead) and affected (assist) regions from the apportionment stream:
the table, the assist callable, and the engine waiting for the apportionment stage's progress.
Pure: no services."""

from __future__ import annotations

import json
from typing import Any

from alerts.affected import NetworkAssist
from alerts.attribution import ApportionedAssist, ApportionmentTable
from alerts.engine import AlertEngine, EngineConfig
from alerts.observations import alert_record, observations
from alerts.tiers.rules import load_rules
from jointwatch.settings import REPO_ROOT
from schemas.errors import read_yaml
from schemas.models import progress_marker, validation_errors
from tests.samples import NETWORK as NET
from tests.samples import M, T0, aqi_index, region_apportionment, water_rt_index

H = 60 * M
RULES_FILE = REPO_ROOT / "config" / "tier_rules.yaml"
DOC = read_yaml(RULES_FILE)
CONFIG = EngineConfig(order_slack_ms=2 * M, heartbeat_ms=M, idle_s=30.0, apportion_wait_s=60.0)
CENTRAL_AIR = [s.id for s in NET.stations.values() if s.region == "central" and s.medium == "air"][:4]
PARTITIONS = ("0", "1")


def table_with(*records: dict[str, Any], through: int | None = None) -> ApportionmentTable:
    table = ApportionmentTable()
    table.expect(PARTITIONS)
    for r in records:
        table.offer("0", r)
    if through is not None:
        for p in PARTITIONS:
            table.offer(p, progress_marker(through, "test"))
    return table


def obs_of(doc: dict[str, Any]):
    return observations(doc)[0]


def test_window_used_is_the_last_hour_solved_delay_before_the_observation() -> None:
    table = ApportionmentTable(delay_ms=10 * M)
    assert table.window_for(T0 + 10 * M) == T0
    assert table.window_for(T0 + 10 * M - 1) == T0 - H
    assert table.window_for(T0 + 69 * M) == T0


def test_bound_needs_a_marker_on_every_partition_and_is_the_slowest() -> None:
    table = ApportionmentTable(delay_ms=10 * M)
    table.expect(PARTITIONS)
    assert table.bound() is None
    table.offer("0", progress_marker(T0 + 2 * H, "s"))
    assert table.bound() is None  # partition 1 not heard from: nothing to wait for yet
    table.offer("1", progress_marker(T0 + H, "s"))
    assert table.bound() == T0 + H + 10 * M + H - 1
    table.offer("1", progress_marker(T0, "s"))  # an older marker (re-sent) never moves it back
    assert table.bound() == T0 + H + 10 * M + H - 1


def test_receptor_region_alert_names_the_origin_as_lead_and_itself_as_assist() -> None:
    table = table_with(region_apportionment("central", T0, "north", 0.4), region_apportionment("south", T0, "north", 0.2),
                       region_apportionment("north", T0, None), through=T0)
    origin, affected, basis = ApportionedAssist(table, NetworkAssist(NET))(obs_of(aqi_index("c-a01", 30, 230)))
    assert origin == "north" and affected == ("central", "south")
    assert basis == {"method": "apportionment", "window_end": T0, "pollutant": "pm25", "origin_share": 0.4,
                     "record_id": f"transport:central:pm25:{T0 - 6 * H}"}


def test_origin_region_alert_lists_the_regions_its_pollution_reached() -> None:
    table = table_with(region_apportionment("central", T0, "north", 0.4), region_apportionment("north", T0, None), through=T0)
    origin, affected, basis = ApportionedAssist(table, NetworkAssist(NET))(obs_of(aqi_index("n-a01", 30, 230)))
    assert origin == "north" and affected == ("central",) and basis["reaches"] == ["central"]


def test_other_pollutants_and_other_windows_do_not_decide() -> None:
    table = table_with(region_apportionment("central", T0, "north", 0.4, pollutant="so2"),
                       region_apportionment("central", T0 + H, "north", 0.4), through=T0 + H)
    assist = ApportionedAssist(table, NetworkAssist(NET))
    # the index's primary pollutant is pm25; at minute 30 the window is T0 (so2 only there)
    assert assist(obs_of(aqi_index("c-a01", 30, 230)))[:2] == ("central", ())
    assert assist(obs_of(aqi_index("c-a01", 70, 230)))[:2] == ("north", ("central",))


def test_without_apportionment_the_network_fallback_decides() -> None:
    assist = ApportionedAssist(table_with(), NetworkAssist(NET))
    origin, affected, basis = assist(obs_of(aqi_index("n-a01", 30, 230, wind_from=0.0)))
    assert (origin, affected) == NetworkAssist(NET)(obs_of(aqi_index("n-a01", 30, 230, wind_from=0.0)))
    assert basis == {"method": "wind", "window_end": T0}
    water = obs_of(water_rt_index("n-w01", 30, 3.0))
    assert assist(water) == (*NetworkAssist(NET)(water), None)


def central_episode(minutes: int = 360, peak: int = 230) -> list[dict[str, Any]]:
    return [aqi_index(s, m, peak if 10 <= m < minutes - 40 else 60) for m in range(1, minutes + 1) for s in CENTRAL_AIR]


def apportionment_log(hours: int) -> list[tuple[int, str, dict[str, Any]]]:
    """(publish minute, partition, message): each hour's region records, then markers, 5 min after the hour."""
    out: list[tuple[int, str, dict[str, Any]]] = []
    for h in range(hours):
        end = T0 + h * H
        out += [(h * 60 + 5, "0", region_apportionment("central", end, "north", 0.35)), (h * 60 + 5, "1", region_apportionment("north", end, None))]
        out += [(h * 60 + 5, p, progress_marker(end, "test")) for p in PARTITIONS]
    return out


def new_engine() -> AlertEngine:
    table = ApportionmentTable()
    table.expect(PARTITIONS)
    return AlertEngine(NET, load_rules(RULES_FILE, NET), DOC, CONFIG, ApportionedAssist(table, NetworkAssist(NET)), table)


def engine_waiting_for_window_t0() -> AlertEngine:
    """Apportionment published through the window ending T0 - 1 h; central's episode offered to minute 120."""
    engine = new_engine()
    for p in PARTITIONS:
        engine.offer_apportionment(p, progress_marker(T0 - H, "test"))
    for doc in central_episode(120):
        engine.offer(str(hash(doc["station_id"]) % 2), doc, 0.0)
    return engine


def run_engine(indices: list[dict[str, Any]], log: list[tuple[int, str, dict[str, Any]]], lag_min: int = 0,
               engine: AlertEngine | None = None) -> tuple[AlertEngine, list[dict[str, Any]]]:
    """Feed minute by minute; apportionment messages arrive lag_min after their publish minute. Processing
    time stays below apportion_wait_s, so only event time decides."""
    engine = engine or new_engine()
    alerts: list[dict[str, Any]] = []
    by_minute: dict[int, list[dict[str, Any]]] = {}
    for doc in indices:
        by_minute.setdefault((doc["window_end"] - T0) // M, []).append(doc)
    pending = sorted(log, key=lambda e: e[0])
    for minute in sorted(by_minute):
        while pending and pending[0][0] + lag_min <= minute:
            _, partition, msg = pending.pop(0)
            engine.offer_apportionment(partition, msg)
        for doc in by_minute[minute]:
            engine.offer(str(hash(doc["station_id"]) % 2), doc, 0.0)
        alerts += [alert_record(t) for t in engine.advance(1.0)]
    for _, partition, msg in pending:
        engine.offer_apportionment(partition, msg)
    alerts += [alert_record(t) for t in engine.advance(1000.0)]  # inputs idle: the rest (waits out apportionment)
    return engine, alerts


def air(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str, str, list[str]]]:
    return [(a["subject"], a["action"], a["tier"], a["origin_region"], a["affected_regions"]) for a in alerts if a["kind"] == "air"]


def test_episode_in_central_from_north_is_led_by_north_in_every_transition() -> None:
    _, alerts = run_engine(central_episode(), apportionment_log(7))
    got = air(alerts)
    assert [(s, act, tier) for s, act, tier, _, _ in got if s == CENTRAL_AIR[0]] == [
        (CENTRAL_AIR[0], "raise", "yellow"), (CENTRAL_AIR[0], "escalate", "red"), (CENTRAL_AIR[0], "clear", "green")]
    assert {(o, tuple(a)) for _, _, _, o, a in got} == {("north", ("central",))}
    assert any(a["scope"] == "region" for a in alerts if a["kind"] == "air")
    for a in alerts:
        assert validation_errors("alert", a) == [], a
    raise_ = next(a for a in alerts if a["kind"] == "air" and a["action"] == "raise")
    assert raise_["inputs"]["attribution"]["record_id"].startswith("transport:central:pm25:")


def test_apportionment_arriving_late_or_early_gives_the_same_alerts() -> None:
    _, reference = run_engine(central_episode(), apportionment_log(7))
    for lag in (-60, 0, 20, 45):  # read an hour early, on time, or well behind the indices
        engine, alerts = run_engine(central_episode(), apportionment_log(7), lag_min=lag)
        assert alerts == reference, lag
        assert engine.apportion_timeouts == 0 and engine.apportion_late == 0


def test_the_engine_holds_alerts_until_the_window_they_need_is_published() -> None:
    engine = engine_waiting_for_window_t0()
    engine.advance(1.0)
    assert engine.released_to == T0 + 10 * M - 1  # window T0 not published: observations from T0 + 10 min wait
    engine.offer_apportionment("0", region_apportionment("central", T0, "north", 0.35))
    for p in PARTITIONS:
        engine.offer_apportionment(p, progress_marker(T0, "test"))
    raised = [alert_record(t) for t in engine.advance(2.0)]
    assert engine.released_to == T0 + 70 * M - 1  # window T0 covers observations up to T0 + 10 min + 1 h
    assert raised and {a["origin_region"] for a in raised if a["kind"] == "air"} == {"north"}


def test_a_silent_apportionment_stage_delays_alerts_at_most_the_wait_then_counts_a_timeout() -> None:
    engine = engine_waiting_for_window_t0()
    assert [t for t in engine.advance(1.0) if t.kind == "air"] == []
    assert [t for t in engine.advance(1.0 + CONFIG.apportion_wait_s - 1) if t.kind == "air"] == []
    late = [t for t in engine.advance(1.0 + CONFIG.apportion_wait_s) if t.kind == "air"]
    assert late and {t.origin_region for t in late} == {"central"}  # no window: the own region leads
    assert engine.apportion_timeouts == 1
    # a record of a window whose observations were already released is counted, not applied backwards
    engine.offer_apportionment("0", region_apportionment("central", T0, "north", 0.35))
    assert engine.apportion_late == 1


def test_snapshot_carries_the_table_and_restore_midway_changes_nothing() -> None:
    data, log = central_episode(), apportionment_log(7)
    _, reference = run_engine(data, log)
    half = [d for d in data if d["window_end"] <= T0 + 150 * M]
    engine, first = run_engine(half, [e for e in log if e[0] <= 150])
    engine_alerts_before = len(first)
    snap = json.loads(json.dumps(engine.snapshot()))
    table = ApportionmentTable()
    table.expect(PARTITIONS)
    restored = AlertEngine.restore(snap, NET, CONFIG, ApportionedAssist(table, NetworkAssist(NET)), table)
    assert table.windows and table.progress == {"0": T0 + 2 * H, "1": T0 + 2 * H}
    _, second = run_engine([d for d in data if d["window_end"] > T0 + 150 * M], [e for e in log if e[0] > 150], engine=restored)
    assert engine_alerts_before and first + second == reference


def test_an_open_episode_is_reattributed_once_apportionment_finds_the_origin_and_keeps_it() -> None:
    """Raised before any window names an origin (central leads); the window ending T0 + 2 h names
    north: one 'reattribute' per key, same tier; later windows without an origin keep north."""
    log: list[tuple[int, str, dict[str, Any]]] = []
    for h in range(7):
        end = T0 + h * H
        log += [(h * 60 + 5, "0", region_apportionment("central", end, "north" if h in (2, 3, 4) else None, 0.4))]
        log += [(h * 60 + 5, p, progress_marker(end, "test")) for p in PARTITIONS]
    _, alerts = run_engine(central_episode(peak=180), log)
    station = [a for a in alerts if a["kind"] == "air" and a["subject"] == CENTRAL_AIR[0]]
    assert [(a["action"], a["tier"], a["origin_region"]) for a in station] == [
        ("raise", "yellow", "central"), ("reattribute", "yellow", "north"), ("clear", "green", "north")]
    raise_, moved, clear = station
    assert moved["window_end"] == T0 + 2 * H + 10 * M  # the first observation that uses the window ending T0 + 2 h
    assert moved["episode_id"] == raise_["alert_id"] == clear["episode_id"] and moved["previous_tier"] == "yellow"
    assert moved["affected_regions"] == ["central"] and moved["reason"].startswith("origin north (was central): 40% of central's pm25")
    assert clear["inputs"]["attribution"]["held"] == "episode origin"
    region = [(a["action"], a["origin_region"]) for a in alerts if a["kind"] == "air" and a["scope"] == "region"]
    assert region == [("raise", "central"), ("reattribute", "north"), ("clear", "north")]
    for a in alerts:
        assert validation_errors("alert", a) == [], a


def reach_record(upstream: str, downstream: str, window_end: int, region: str, parameter: str = "nh3n") -> dict[str, Any]:
    rec = {
        "schema": "jw.apportionment.v1", "record_id": f"water_reach:{upstream}>{downstream}:{parameter}:{window_end - 6 * H}",
        "kind": "water_reach", "scope": "reach", "receptor": f"{upstream}>{downstream}", "region": region, "pollutant": parameter,
        "window_start": window_end - 6 * H, "window_end": window_end, "basis": "concentration", "unit": "mg/L",
        "shares": {region: 1.0}, "uncertainty": {}, "amounts": {region: 0.2}, "fit": {"r2": None, "rmse": None, "n_steps": 6},
        "origin_region": region, "affected_regions": [],
        "provenance": {"model_version": "water-reach/1", "stations": [], "wind_from_deg": None, "wind_speed_ms": None, "seed": 0},
    }
    assert validation_errors("apportionment", rec) == []
    return rec


def test_a_border_sections_water_alert_is_led_by_the_region_answering_for_the_reach_into_it() -> None:
    table = table_with(reach_record("n-w02", "c-w01", T0, "north"), reach_record("c-w01", "c-w02", T0, "central"),
                       reach_record("n-w02", "c-w01", T0, "north", "tp"), through=T0)
    assist = ApportionedAssist(table, NetworkAssist(NET))
    origin, affected, basis = assist(obs_of(water_rt_index("c-w01", 30, 1.5)))
    assert (origin, affected) == ("north", ("central", "south"))
    assert basis == {"method": "water_reach", "window_end": T0, "pollutant": "nh3n", "origin_share": 1.0,
                     "record_id": f"water_reach:n-w02>c-w01:nh3n:{T0 - 6 * H}"}
    assert assist(obs_of(water_rt_index("c-w02", 30, 1.5)))[:2] == NetworkAssist(NET)(obs_of(water_rt_index("c-w02", 30, 1.5)))
    assert assist(obs_of(water_rt_index("n-w01", 30, 1.5))) == (*NetworkAssist(NET)(obs_of(water_rt_index("n-w01", 30, 1.5))), None)
