"""The alert stage on real Kafka: index records in, tier transitions out, exactly once across
a restart, rules updates from the control topic without a restart, bad records counted and skipped;
with apportionment on, origin (lead) and affected regions named from jw.apportionment."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from alerts.engine import AlertEngine, EngineConfig
from alerts.observations import alert_record
from alerts.stage import AlertStage, publish_rules
from alerts.affected import NetworkAssist
from alerts.attribution import ApportionedAssist, ApportionmentTable
from alerts.tiers.rules import parse_rules
from connectors.kafka_io import encode_json, producer_config
from jointwatch.settings import Settings
from schemas.errors import read_yaml
from schemas.models import progress_marker, validation_errors
from schemas.topics import ALERTS, APPORTIONMENT, INDICES, namespaced
from tests.integration import background
from tests.integration.kafka_read import read_n, read_until
from tests.samples import NETWORK, T0, aqi_index, region_apportionment

pytestmark = pytest.mark.integration

CONFIG = EngineConfig(order_slack_ms=120_000, idle_s=3.0)
STATIONS = ["n-a01", "n-a02", "c-a01"]


@pytest.fixture
def settings(stack: Any) -> Settings:
    return stack.isolated()


def rules_doc(settings: Settings, health: bool = False) -> dict[str, Any]:
    """The shipped rules, without the no-data rule: this test feeds 3 of the network's 36 stations."""
    doc = copy.deepcopy(read_yaml(settings.tier_rules_file))
    if not health:
        for region in ("north", "central", "south"):
            doc["regions"][region] = {**(doc["regions"].get(region) or {}), "health": None}
    return doc


def produce(settings: Settings, docs: list[Any]) -> None:
    producer = Producer(producer_config(settings.kafka_bootstrap))
    for doc in docs:
        key = doc["station_id"].encode() if isinstance(doc, dict) else b"junk"
        producer.produce(namespaced(INDICES, settings.namespace), key=key, value=doc if isinstance(doc, bytes) else encode_json(doc))
    assert producer.flush(10) == 0


def episode(minutes: range, peak: int) -> list[dict[str, Any]]:
    return [aqi_index(s, m, peak if 10 <= m < 250 else 60, wind_from=0.0) for m in minutes for s in STATIONS]


def reference(doc: dict[str, Any], indices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same indices through the pure engine in one go (everything released at the end)."""
    engine = AlertEngine(NETWORK, parse_rules(doc, NETWORK), doc, CONFIG, NetworkAssist(NETWORK))
    for d in indices:
        engine.offer("0", d, 0.0)
    return [alert_record(t) for t in engine.advance(1e9)]


def alerts_topic(settings: Settings) -> list[str]:
    return [namespaced(ALERTS, settings.namespace)]


def test_transitions_exactly_once_across_a_restart(tmp_path, settings: Settings) -> None:
    doc = rules_doc(settings)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(encode_json(doc).decode())  # JSON is YAML
    first, second = episode(range(1, 200), 240), episode(range(200, 400), 240)
    expected = reference(doc, first + second)
    assert [(a["subject"], a["action"], a["tier"]) for a in expected if a["subject"] == "n-a01"] == [
        ("n-a01", "raise", "yellow"), ("n-a01", "escalate", "red"), ("n-a01", "clear", "green"),
    ]
    invalid_before = REGISTRY.get_sample_value("jw_alert_stage_indices_total", {"outcome": "invalid"}) or 0

    produce(settings, [*first[:30], b"{not json", {**first[0], "value": "high"}, *first[30:]])
    stage = AlertStage(settings, NETWORK, group_id="jw-alert-stage-test", rules_file=rules_file, config=CONFIG, apportionment=False)
    with background.running(stage.run, "alert-stage-1"):
        assert stage.ready.wait(30)
        got = read_until(settings.kafka_bootstrap, alerts_topic(settings), lambda m: len(m) >= 4, timeout_s=60)
    assert REGISTRY.get_sample_value("jw_alert_stage_indices_total", {"outcome": "invalid"}) == invalid_before + 2

    produce(settings, second)  # while no stage runs; a new instance continues from the committed snapshot
    stage = AlertStage(settings, NETWORK, group_id="jw-alert-stage-test", rules_file=rules_file, config=CONFIG, apportionment=False)
    with background.running(stage.run, "alert-stage-2"):
        got = read_n(settings.kafka_bootstrap, alerts_topic(settings), len(expected), timeout_s=60)
    alerts = [d for _, d in got]
    # nothing twice, nothing lost, same ids; and per origin region (one Kafka partition) the same order
    assert len(alerts) == len(expected) and sorted(map(encode_json, alerts)) == sorted(map(encode_json, expected))
    for region in ("north", "central"):
        assert [a for a in alerts if a["origin_region"] == region] == [a for a in expected if a["origin_region"] == region]
    assert all(validation_errors("alert", a) == [] for a in alerts)
    red = next(a for a in alerts if a["tier"] == "red" and a["subject"] == "n-a01")
    assert red["origin_region"] == "north" and red["affected_regions"] == ["central"]  # northerly wind: Hulín is downwind
    regions = {a["scope"] for a in alerts}
    assert regions == {"station"}  # 2 north stations stay below the region quota of 3


def test_rules_update_from_the_control_topic_applies_without_restart(tmp_path, settings: Settings) -> None:
    doc = rules_doc(settings)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(encode_json(doc).decode())
    stage = AlertStage(settings, NETWORK, group_id="jw-alert-stage-rules", rules_file=rules_file, config=CONFIG, apportionment=False)
    calm = [aqi_index("n-a01", m, 90) for m in range(1, 61)]
    with background.running(stage.run, "alert-stage-rules"):
        assert stage.ready.wait(30)
        produce(settings, calm)
        time.sleep(CONFIG.idle_s + 2)  # all released: AQI 90 is green under the shipped rules
        assert read_until(settings.kafka_bootstrap, alerts_topic(settings), lambda m: False, timeout_s=3) == []

        stricter = copy.deepcopy(doc)
        stricter["version"] = doc["version"] + 1
        stricter["regions"]["north"] = {**stricter["regions"]["north"], "air": {"tiers": {"yellow": {"enter_above": 80, "exit_below": 70}}}}
        broken = {**copy.deepcopy(stricter), "version": doc["version"] + 2, "regions": {"atlantis": {}}}
        publish_rules(settings, broken, None)  # rejected with the reason; the running rules stay
        publish_rules(settings, stricter, T0 + 90 * 60_000)
        produce(settings, [aqi_index("n-a01", m, 90) for m in range(61, 121)])
        got = read_n(settings.kafka_bootstrap, alerts_topic(settings), 1, timeout_s=60)
    assert len(got) == 1, got
    alert = got[0][1]
    assert (alert["action"], alert["tier"], alert["rule_version"]) == ("raise", "yellow", doc["version"] + 1)
    assert alert["window_end"] == T0 + 91 * 60_000  # the first window ending after effective_from
    assert REGISTRY.get_sample_value("jw_alert_stage_rule_updates_total", {"outcome": "rejected"}) >= 1


CENTRAL = ["c-a01", "c-a02", "c-a03"]


def apportionment_messages(hours: range) -> list[tuple[str, int | None, dict[str, Any]]]:
    """(key, partition, message) as the apportionment stage writes them: each hour's region records
    (central's PM2.5 from north from the window ending T0 + 2 h), then a marker on every partition."""
    out: list[tuple[str, int | None, dict[str, Any]]] = []
    for h in hours:
        end = T0 + h * 3_600_000
        out += [("central", None, region_apportionment("central", end, "north" if h >= 2 else None, 0.4)),
                ("north", None, region_apportionment("north", end, None))]
        out += [("~progress", p, progress_marker(end, "test")) for p in (0, 1)]
    return out


def produce_apportionment(settings: Settings, messages: list[tuple[str, int | None, dict[str, Any]]]) -> None:
    producer = Producer(producer_config(settings.kafka_bootstrap))
    for key, partition, doc in messages:
        extra = {} if partition is None else {"partition": partition}
        producer.produce(namespaced(APPORTIONMENT, settings.namespace), key=key.encode(), value=encode_json(doc), **extra)
    assert producer.flush(10) == 0


def test_origin_from_apportionment_exactly_once_across_a_restart(tmp_path, settings: Settings) -> None:
    """A central episode raised before apportionment names an origin is reattributed to north once a
    window does; a restart in between (snapshot with both topics' offsets) changes nothing."""
    doc = rules_doc(settings)
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(encode_json(doc).decode())
    minutes = [[aqi_index(s, m, 180 if 10 <= m < 320 else 60) for s in CENTRAL] for m in range(1, 361)]
    indices = [d for batch in minutes for d in batch]
    messages = apportionment_messages(range(7))
    table = ApportionmentTable()
    table.expect(["0", "1"])
    engine = AlertEngine(NETWORK, parse_rules(doc, NETWORK), doc, CONFIG, ApportionedAssist(table, NetworkAssist(NETWORK)), table)
    for key, partition, m in messages:
        engine.offer_apportionment(str(partition if partition is not None else 0), m)
    for d in indices:
        engine.offer("0", d, 0.0)
    expected = [alert_record(t) for t in engine.advance(1e9)]
    c01 = [(a["action"], a["origin_region"]) for a in expected if a["subject"] == "c-a01"]
    assert c01 == [("raise", "central"), ("reattribute", "north"), ("clear", "north")], c01

    first = [d for d in indices if d["window_end"] <= T0 + 150 * 60_000]
    produce(settings, first)
    produce_apportionment(settings, apportionment_messages(range(2)))  # the stage is 2 windows in when the first instance stops
    produce_apportionment(settings, [("central", None, {"schema": "jw.apportionment.v1", "kind": "plume"})])  # counted, skipped
    invalid_before = REGISTRY.get_sample_value("jw_alert_stage_apportionment_total", {"outcome": "invalid"}) or 0
    stage = AlertStage(settings, NETWORK, group_id="jw-alert-stage-apportion", rules_file=rules_file, config=CONFIG)
    with background.running(stage.run, "alert-stage-a1"):
        assert stage.ready.wait(30)
        read_until(settings.kafka_bootstrap, alerts_topic(settings), lambda m: len(m) >= 2, timeout_s=60)
    assert REGISTRY.get_sample_value("jw_alert_stage_apportionment_total", {"outcome": "invalid"}) == invalid_before + 1

    produce(settings, indices[len(first):])
    produce_apportionment(settings, apportionment_messages(range(2, 7)))
    stage = AlertStage(settings, NETWORK, group_id="jw-alert-stage-apportion", rules_file=rules_file, config=CONFIG)
    with background.running(stage.run, "alert-stage-a2"):
        got = read_n(settings.kafka_bootstrap, alerts_topic(settings), len(expected), timeout_s=90)
    alerts = [d for _, d in got]
    assert sorted(map(encode_json, alerts)) == sorted(map(encode_json, expected))
    moved = next(a for a in alerts if a["action"] == "reattribute" and a["subject"] == "c-a01")
    assert moved["affected_regions"] == ["central"] and moved["inputs"]["attribution"]["method"] == "apportionment"
