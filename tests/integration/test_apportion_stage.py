"""The apportionment stage on real Kafka: the simulator's cross-region episode (a plume from
`north` carried into `central`, apportion.synthetic.demo_episode) as station-hour records on
jw.readings.station1h; the stage publishes region windows on jw.apportionment that match the
schema, name north as the origin of central's episode windows and no origin once it is clean,
skip bad records, are found by `apportion show`'s tail read, and give the same bytes when restarted mid-stream as in one pass (and as the
pure Apportioner on the same input)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import REGISTRY

from apportion.stage import HOUR_MS, ApportionStage, Apportioner, StageConfig
from connectors.kafka_io import encode_json, producer_config
from jointwatch.cli_apportion import latest_apportionment
from jointwatch.settings import Settings
from schemas.models import validation_errors
from schemas.topics import APPORTIONMENT, STATION_HOURS, namespaced
from simulator.scenario import DEFAULT_START_MS
from tests.integration import background
from tests.samples import NETWORK
from tests.unit.test_apportion_stage import HOURS, Feed, demo_feed, run

pytestmark = pytest.mark.integration

GROUP = "jw-apportion-stage-test"
CONFIG = StageConfig()  # the stage's defaults; the feed has PM2.5 only, so the other pollutants have no windows


def produce(settings: Settings, feed: Feed, upto_ms: int | None = None, since_ms: int | None = None, junk: bool = False) -> None:
    """The feed's records with window_end in (since_ms, upto_ms], each to its own partition in feed order."""
    producer = Producer(producer_config(settings.kafka_bootstrap))
    topic = namespaced(STATION_HOURS, settings.namespace)
    if junk:  # not JSON, and an air station the network does not know: skipped and counted
        producer.produce(topic, key=b"junk", value=b"{not json", partition=0)
        stray = {**feed[1][0], "station_id": "x-a99"}
        producer.produce(topic, key=b"x-a99", value=encode_json(stray), partition=1)
    for p, docs in feed.items():
        for doc in docs:
            if (upto_ms is None or doc["window_end"] <= upto_ms) and (since_ms is None or doc["window_end"] > since_ms):
                producer.produce(topic, key=doc["station_id"].encode(), value=encode_json(doc), partition=p)
    assert producer.flush(20) == 0


def read_raw(settings: Settings, n: int, timeout_s: float = 30.0) -> list[bytes]:
    """At least n record values of the namespace's apportionment topic, then 2 s more for extras."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-read-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([namespaced(APPORTIONMENT, settings.namespace)])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    try:
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            out += [m.value() for m in consumer.consume(500, timeout=0.5) if not m.error()]
            if settle is None and len(out) >= n:
                settle = time.monotonic() + 2.0
    finally:
        consumer.close()
    return out


def invalid(reason: str) -> float:
    return REGISTRY.get_sample_value("jw_apportion_invalid_station_hours_total", {"reason": reason}) or 0.0


@pytest.fixture(scope="module")
def reference() -> list[bytes]:
    """The pure stage's one pass over the same feed: what Kafka must carry, byte for byte."""
    _, _, feed = demo_feed()
    return run(Apportioner(NETWORK, CONFIG), feed, [p for p in feed for _ in feed[p]])


def test_stage_names_the_origin_and_restarts_to_the_same_records(stack: Any, reference: list[bytes]) -> None:
    series, plume, feed = demo_feed()
    one, two = stack.isolated(), stack.isolated()
    json_before, station_before = invalid("json"), invalid("station")

    # One pass.
    produce(one, feed, junk=True)
    with background.running(ApportionStage(one, NETWORK, group_id=GROUP, config=CONFIG).run, "apportion-one-pass"):
        single = read_raw(one, len(reference))
    assert invalid("json") == json_before + 1 and invalid("station") == station_before + 1
    assert sorted(single) == sorted(reference) and len(set(single)) == len(single)

    records = [json.loads(v) for v in single]
    assert all(validation_errors("apportionment", r) == [] for r in records)
    central = [j for j, s in enumerate(series.stations) if s.region == "central"]
    by = {(r["region"], (r["window_end"] - DEFAULT_START_MS) // HOUR_MS): r for r in records if r["pollutant"] == "pm25"}
    episode = [h for h in range(3, HOURS + 1) if plume[central, max(0, h - 6):h].sum() / series.conc[central, max(0, h - 6):h].sum() >= 0.2]
    assert len(episode) >= 6
    assert all(by[("central", h)]["origin_region"] == "north" and by[("central", h)]["affected_regions"] == ["central"] for h in episode)
    assert all(by[("central", h)]["origin_region"] is None for h in range(13, HOURS + 1))  # clean: the plume has left
    assert all(r["origin_region"] is None for r in records if r["region"] != "central")
    # `jointwatch apportion show central` reads the newest window from the topic's tail
    latest = latest_apportionment(one, "central", "pm25")
    assert latest == by[("central", HOURS)]
    assert latest_apportionment(one, "central", "o3") is None

    # The same input, with the stage stopped after the first half and restarted (same group) for the rest.
    half = DEFAULT_START_MS + (HOURS // 2) * HOUR_MS + 30 * 60_000
    produce(two, feed, upto_ms=half)
    first_n = sum(1 for r in records if r["window_end"] <= half - CONFIG.slack_ms)
    with background.running(ApportionStage(two, NETWORK, group_id=GROUP, config=CONFIG).run, "apportion-before-restart"):
        before = read_raw(two, first_n)
    assert len(before) == first_n
    produce(two, feed, since_ms=half)
    with background.running(ApportionStage(two, NETWORK, group_id=GROUP, config=CONFIG).run, "apportion-after-restart"):
        restarted = read_raw(two, len(reference))
    assert sorted(restarted) == sorted(reference) and len(set(restarted)) == len(restarted)  # nothing twice, nothing lost
