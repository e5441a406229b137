"""The alert engine (ordering, heartbeats, rules updates, snapshots), index -> observation
mapping and the interim assist regions. Pure: no services."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest

from alerts.affected import AssistPolicy, NetworkAssist, bearing_deg, distance_km
from alerts.engine import AlertEngine, EngineConfig, StaleRules
from alerts.observations import alert_record, observations
from alerts.tiers.model import Observation
from alerts.tiers.rules import load_rules, parse_rules
from jointwatch.settings import REPO_ROOT
from schemas.errors import ConfigError, read_yaml
from schemas.models import validation_errors
from tests.samples import NETWORK as NET
from tests.samples import M, T0, aqi_index, water_rt_index

RULES_FILE = REPO_ROOT / "config" / "tier_rules.yaml"
DOC = read_yaml(RULES_FILE)
RULES = load_rules(RULES_FILE, NET)
NORTH_AIR = [s.id for s in NET.stations.values() if s.region == "north" and s.medium == "air"]
CONFIG = EngineConfig(order_slack_ms=2 * M, heartbeat_ms=M, idle_s=30.0)


def episode(stations: list[str], minutes: int, peak: int, wind_from: float = 0.0) -> list[dict[str, Any]]:
    """AQI 60 -> `peak` from minute 10 to minutes-40 -> 60, every station every minute."""
    out = []
    for m in range(1, minutes + 1):
        v = peak if 10 <= m < minutes - 40 else 60
        out += [aqi_index(s, m, v, wind_from) for s in stations]
    return out


def feed(engine: AlertEngine, indices: list[dict[str, Any]], partitions: int = 2, seed: int | None = None, chunk: int = 50) -> list[dict[str, Any]]:
    """Offer the indices (optionally shuffled across partitions within small chunks) and advance; the alerts."""
    alerts: list[dict[str, Any]] = []
    rng = random.Random(seed)
    now = 0.0
    for i in range(0, len(indices), chunk):
        part = indices[i:i + chunk]
        if seed is not None:
            part = part[:]
            rng.shuffle(part)
        for doc in part:
            engine.offer(str(hash(doc["station_id"]) % partitions), doc, now)
        alerts += [alert_record(t) for t in engine.advance(now)]
        now += 1.0
    alerts += [alert_record(t) for t in engine.advance(now + 1000)]  # all partitions idle: release the rest
    return alerts


def new_engine(doc: dict[str, Any] | None = None) -> AlertEngine:
    d = doc or DOC
    return AlertEngine(NET, parse_rules(d, NET), d, CONFIG, NetworkAssist(NET))


def only_air(alerts: list[dict[str, Any]]) -> list[tuple]:
    return [(a["subject"], a["action"], a["tier"]) for a in alerts if a["kind"] == "air"]


def test_episode_raises_escalates_and_clears_with_reasons_and_valid_records() -> None:
    alerts = feed(new_engine(), episode(["n-a01"], 400, 230))
    assert only_air(alerts) == [("n-a01", "raise", "yellow"), ("n-a01", "escalate", "red"), ("n-a01", "clear", "green")]
    raise_, escalate, clear = [a for a in alerts if a["kind"] == "air"]
    assert escalate["episode_id"] == clear["episode_id"] == raise_["alert_id"]
    # red needs AQI > 200 held for 120 min of event time: the first window at minute 10 started at -50
    assert escalate["window_end"] - escalate["condition_since"] >= 120 * M and "aqi 230 > 200" in escalate["reason"]
    assert clear["window_end"] - escalate["window_end"] >= 120 * M  # min dwell
    for a in alerts:
        assert validation_errors("alert", a) == [], a
        assert a["rule_set_id"] == RULES.rule_set_id and a["rule_version"] == RULES.version
    assert raise_["inputs"]["index_id"] == "n-a01-10" and raise_["standard"] == "HJ 633-2012"


def test_same_input_in_any_partition_interleaving_gives_identical_alerts() -> None:
    data = episode(NORTH_AIR[:4], 300, 260)
    reference = feed(new_engine(), data)
    assert {a["scope"] for a in reference} == {"station", "region"}  # 4 of 10 north stations >= min_stations 3
    for seed in (1, 2, 3):
        assert feed(new_engine(), data, partitions=3, seed=seed) == reference


def test_snapshot_and_restore_midway_changes_nothing() -> None:
    data = episode(NORTH_AIR[:3], 300, 260)
    reference = feed(new_engine(), data)
    half = len(data) // 2
    first = new_engine()  # fed by hand: feed() would release everything at its end (all idle)
    got = []
    for i in range(0, half, 50):
        for doc in data[i:i + 50]:
            first.offer(str(hash(doc["station_id"]) % 2), doc, 0.0)
        got += [alert_record(t) for t in first.advance(0.0)]
    snap = json.loads(json.dumps(first.snapshot()))  # through JSON, as in Kafka
    second = AlertEngine.restore(snap, NET, CONFIG, NetworkAssist(NET))
    got += feed(second, data[half:])
    assert got == reference


def test_silent_station_gets_no_data_alert_after_silence_plus_pending_and_clears_when_back() -> None:
    data = []
    for m in range(1, 181):
        data.append(aqi_index("n-a01", m, 40))
        if not 30 <= m < 120:  # n-a02 silent for 90 minutes
            data.append(aqi_index("n-a02", m, 40))
    rules = copy.deepcopy(DOC)
    alerts = [a for a in feed(new_engine(rules), data) if a["kind"] == "health" and a["subject"] == "n-a02"]
    assert [(a["action"], a["tier"]) for a in alerts] == [("raise", "yellow"), ("clear", "green")]
    # last data at minute 29; 30 min silent + 10 pending -> the heartbeat at minute 69 raises
    assert alerts[0]["window_end"] == T0 + 69 * M and "no valid data for 40 min" in alerts[0]["reason"]
    assert alerts[1]["window_end"] >= T0 + 120 * M + 15 * M  # exit persistence 15 min of data again


def test_rules_update_applies_from_its_effective_time_only() -> None:
    engine = new_engine()
    stricter = copy.deepcopy(DOC)
    stricter["version"] = DOC["version"] + 1
    stricter["regions"]["north"] = {"air": {"tiers": {"yellow": {"enter_above": 50, "exit_below": 40}}}}
    engine.offer_rules(stricter, T0 + 100 * M)
    alerts = feed(engine, [aqi_index("n-a01", m, 80) for m in range(1, 200)])
    (raised,) = [a for a in alerts if a["kind"] == "air"]
    assert raised["window_end"] == T0 + 101 * M and raised["rule_version"] == DOC["version"] + 1
    assert engine.rules.version == DOC["version"] + 1
    with pytest.raises(StaleRules):
        engine.offer_rules(stricter, None)
    broken = copy.deepcopy(stricter)
    broken["version"] += 1
    broken["regions"]["north"]["air"]["tiers"]["yellow"]["exit_below"] = 60  # above enter: no hysteresis band
    with pytest.raises(ConfigError):
        engine.offer_rules(broken, None)


def test_rules_update_in_the_past_applies_from_the_watermark() -> None:
    engine = new_engine()
    feed(engine, [aqi_index("n-a01", m, 80) for m in range(1, 50)])
    newer = {**copy.deepcopy(DOC), "version": DOC["version"] + 1}
    pending = engine.offer_rules(newer, T0)
    assert pending.effective_from == engine.released_to


def test_observations_of_each_index_kind() -> None:
    air = observations(aqi_index("n-a01", 5, 120, wind_from=10.0))
    assert [(o.kind, o.indicator, o.value) for o in air] == [("air", "aqi", 120.0), ("health", "no-data", 1.0)]
    assert air[0].inputs["wind"]["from_deg"] == 10.0
    none = observations(aqi_index("n-a01", 5, None))
    assert [(o.kind, o.value) for o in none] == [("air", None), ("health", 1.0)]  # data flowed, too little for an index
    water = observations(water_rt_index("n-w01", 5, 0.4))
    assert [(o.kind, o.indicator, o.value) for o in water] == [("water", "nh3n", 0.4), ("health", "no-data", 1.0)]
    hourly = {**water_rt_index("n-w01", 60, 0.4), "index": "water_class", "value": 4}
    assert [(o.kind, o.indicator, o.value) for o in observations(hourly)] == [("water", "class", 4.0)]
    daily = observations({**aqi_index("n-a01", 60, 100), "index": "aqi_daily"})
    assert [(o.kind, o.indicator, o.value) for o in daily] == [("air", "aqi_daily", 100.0)]  # no health tick: not a minute's data


def test_a_rule_on_the_hourly_aqi_uses_only_clock_hour_indices() -> None:
    doc = copy.deepcopy(DOC)
    doc["version"] += 1
    doc["regions"]["north"] = {"air": {"indicator": "aqi_hourly", "persistence": {"observations": 2},
                                       "tiers": {"yellow": {"enter_above": 100, "exit_below": 90}}}}
    hourly = [{**aqi_index("n-a01", 60 * h, aqi), "index": "aqi_hourly"} for h, aqi in enumerate([120, 130, 140, 80], start=1)]
    realtime = [aqi_index("n-a01", m, 300) for m in range(1, 240)]  # ignored by this rule
    alerts = [a for a in feed(new_engine(doc), sorted(hourly + realtime, key=lambda d: d["window_end"])) if a["kind"] == "air"]
    # raised after 2 hourly AQIs > 100; cleared by the hour at 80, after the default 120 min dwell
    assert [(a["indicator"], a["action"], a["window_end"]) for a in alerts] == [("aqi_hourly", "raise", T0 + 120 * M), ("aqi_hourly", "clear", T0 + 240 * M)]


def _obs(station: str, kind: str, wind: dict[str, Any] | None = None) -> Observation:
    s = NET.stations[station]
    return Observation(station, s.region, kind, "aqi" if kind == "air" else "class", 0, M, 1.0, inputs={"wind": wind})


def test_assist_regions_downwind_for_air_and_downstream_for_water() -> None:
    assist = NetworkAssist(NET)
    # Přerov with a northerly wind: Hulín (central) is 12 km due south
    assert assist(_obs("n-a01", "air", {"from_deg": 0.0, "steadiness": 0.9})) == ("north", ("central",))
    # a southerly wind carries it north, where only north's own stations are
    assert assist(_obs("n-a01", "air", {"from_deg": 180.0, "steadiness": 0.9})) == ("north", ())
    # a wind without direction (calm, variable) names nobody
    assert assist(_obs("n-a01", "air", {"from_deg": 0.0, "steadiness": 0.2})) == ("north", ())
    assert assist(_obs("n-a01", "air", None)) == ("north", ())
    assert assist(_obs("n-w01", "water")) == ("north", ("central", "south"))
    assert assist(_obs("s-w01", "water")) == ("south", ())  # most downstream section
    assert NetworkAssist(NET, AssistPolicy(reach_km=50))(_obs("n-w01", "water")) == ("north", ("central",))


def test_distance_and_bearing() -> None:
    a, b = NET.stations["n-a01"], NET.stations["c-a01"]
    assert distance_km(a, b) == pytest.approx(12.6, abs=0.3)
    assert bearing_deg(a, b) == pytest.approx(176, abs=3)
