"""The apportionment stage on real Kafka: the simulator's scenario (a plume from `north` carried
into `central`, apportion.synthetic.demo_episode, and a spill in the river) as station-hour records
of every station and parameter on jw.readings.station1h; the stage publishes region transport
windows, river reach windows and region source-factor hours on jw.apportionment that match the
schema, name north as the origin of central's episode windows and no origin once it is clean,
skip bad records, are found by `apportion show`'s tail read (each kind), and give the same bytes
when restarted mid-stream as in one pass (and as the pure Apportioner on the same input), the
factor model in use refitted from the hours the restart re-read."""

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
from jointwatch.cli_apportion import latest_window
from jointwatch.settings import Settings
from schemas.models import is_progress, validation_errors
from schemas.topics import APPORTIONMENT, STATION_HOURS, namespaced
from simulator.scenario import DEFAULT_START_MS
from tests.integration import background
from tests.samples import NETWORK
from tests.unit.test_apportion_stage import HOURS, Feed, demo_feed, full_feed, run

pytestmark = pytest.mark.integration

GROUP = "jw-apportion-stage-test"
# Transport of PM2.5 only (the truth is the plume's PM2.5); factors refitted every 4 h on 8 h, so the 16 h
# hold refits: at 4 h 40 complete station hours per region (too few), from 8 h on 80.
CONFIG = StageConfig(pollutants=("pm25",), factors=2, factor_window_h=8, refit_h=4, factor_min_rows=60, factor_restarts=1)


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
    """At least n record values of the namespace's apportionment topic (progress markers skipped), then 2 s more for extras."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-read-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([namespaced(APPORTIONMENT, settings.namespace)])
    out: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    try:
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            out += [m.value() for m in consumer.consume(500, timeout=0.5) if not m.error() and not is_progress(json.loads(m.value()))]
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
    feed = full_feed(HOURS)
    return run(Apportioner(NETWORK, CONFIG), feed, [p for p in feed for _ in feed[p]])


def test_stage_names_the_origin_and_restarts_to_the_same_records(stack: Any, reference: list[bytes]) -> None:
    series, plume, _ = demo_feed()  # the truth; the feed carries the same scenario's hours of every parameter
    feed = full_feed(HOURS)
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
    assert {r["kind"] for r in records} == {"transport", "water_reach", "source_factor"}
    central = [j for j, s in enumerate(series.stations) if s.region == "central"]
    by = {(r["region"], (r["window_end"] - DEFAULT_START_MS) // HOUR_MS): r for r in records if r["kind"] == "transport"}
    episode = [h for h in range(3, HOURS + 1) if plume[central, max(0, h - 6):h].sum() / series.conc[central, max(0, h - 6):h].sum() >= 0.2]
    assert len(episode) >= 6
    assert all(by[("central", h)]["origin_region"] == "north" and by[("central", h)]["affected_regions"] == ["central"] for h in episode)
    assert all(by[("central", h)]["origin_region"] is None for h in range(13, HOURS + 1))  # clean: the plume has left
    assert all(r["origin_region"] is None for r in by.values() if r["region"] != "central")
    # `jointwatch apportion show central [--kind ...]` reads the newest window of a kind from the topic's tail
    last = DEFAULT_START_MS + HOURS * HOUR_MS
    assert latest_window(one, "central", "transport", "pm25") == [by[("central", HOURS)]]
    assert latest_window(one, "central", "transport", "o3") == []
    for region, kind in (("central", "water_reach"), ("north", "source_factor")):
        expected = sorted((r for r in records if r["kind"] == kind and r["region"] == region and r["window_end"] == last),
                          key=lambda r: (r["receptor"], r["pollutant"]))
        assert expected and latest_window(one, region, kind) == expected

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
    # after the restart, the factor model fitted before it (at 8 h) was refitted from the hours re-read
    assert any(r["kind"] == "source_factor" and r["window_end"] > half and r["provenance"]["factor_model"]["refit_window_end"] < half
               for r in map(json.loads, restarted))
