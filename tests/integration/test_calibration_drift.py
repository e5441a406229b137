"""Calibration on real Kafka: `calibration apply` -> `proposals` -> `accept` round trip through the CLI
(immutability, backdating, stale and repeated proposals refused, the printed YAML keeps a later apply
consistent), and the drift stage consuming station minutes from jw.readings.station1m: the proposals it
publishes are byte for byte those of the pure core on the same minutes, bad records are skipped and
counted, a restart mid-stream neither loses nor repeats one, and a fresh consumer group that
re-evaluates every window publishes nothing again (the ids already on the topic)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from confluent_kafka import Consumer, Producer
from prometheus_client import REGISTRY

from calibration.control_topic import publish, read_registry
from calibration.drift import HOUR_MS, propose
from calibration.drift_stage import DriftDetector, DriftStage
from calibration.registry import registry_from_messages
from connectors.kafka_io import encode_json, producer_config
from jointwatch.cli import main
from jointwatch.settings import Settings
from schemas.topics import CALIBRATION_PROPOSALS, STATION_MINUTES, namespaced
from tests.integration import background
from tests.samples import NETWORK
from tests.unit.test_calibration_drift_stage import CURRENT, PAIR, SHORT, START, M, drift_feed, interleaving, minute_doc, run

pytestmark = pytest.mark.integration

V1 = {"model_id": "colocation-2026-09", "version": 1, "effective_from": "2026-09-01T00:00:00Z", "type": "linear",
      "coefficients": {"gain": 1.0, "offset": -4.0}}


def cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["calibration", *args, "--state-dir", str(settings.state_dir),
                                     "--port-base", str(settings.port_base), "--namespace", settings.namespace])


def registry_file(path: Path, *extra_versions: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"version": 1, "registry_id": "itest", "unlisted_sensors": "pass", "sensors": [
        {"station_id": "n-a03", "parameter": "pm25", "models": [V1, *extra_versions]}]}, sort_keys=False))
    return path


def produce_proposal(settings: Settings, hours_ago: int = 0) -> dict[str, Any]:
    """A proposal as the drift stage makes it, for the 72 h ending `hours_ago` before the current hour."""
    registry = read_registry(settings.kafka_bootstrap, settings.namespace).registry
    now = int(time.time() * 1000)
    starts = (now - now % HOUR_MS) - (72 + hours_ago) * HOUR_MS + np.arange(72) * HOUR_MS
    ref = 30 + 10 * np.sin(np.arange(72) / 4)
    end = int(starts[-1]) + HOUR_MS
    p = propose("n-a03", "pm25", "n-a01", starts, 1.2 * ref + 4, ref, registry.sensors["n-a03/pm25"].at(end))
    assert p is not None
    producer = Producer(producer_config(settings.kafka_bootstrap))
    producer.produce(namespaced(CALIBRATION_PROPOSALS, settings.namespace), key=p["sensor"], value=encode_json(p))
    assert producer.flush(10) == 0
    return p


def test_apply_proposals_accept_round_trip(stack: Any, tmp_path: Path) -> None:
    s = stack.isolated()
    f = registry_file(tmp_path / "cal.yaml")
    # version 1 takes effect in the past: refused without --backdate, nothing published
    refused = cli(s, "apply", str(f))
    assert refused.exit_code == 1 and "takes effect at 2026-09-01T00:00:00Z, before now" in refused.output
    assert "pass --backdate" in refused.output
    dry = cli(s, "apply", str(f), "--backdate", "--dry-run")
    assert dry.exit_code == 0 and "would publish n-a03/pm25: versions 1..1 (new sensor)" in dry.output
    assert read_registry(s.kafka_bootstrap, s.namespace).registry.sensors == {}
    done = cli(s, "apply", str(f), "--backdate")
    assert done.exit_code == 0, done.output
    assert "published n-a03/pm25: versions 1..1 (new sensor); new: v1 colocation-2026-09 linear" in done.output
    assert cli(s, "apply", str(f)).output.count("nothing to publish") == 1  # already there: no --backdate needed

    p = produce_proposal(s)
    producer = Producer(producer_config(s.kafka_bootstrap))
    producer.produce(namespaced(CALIBRATION_PROPOSALS, s.namespace), key=b"junk", value=b"{not json")
    assert producer.flush(10) == 0
    listed = cli(s, "proposals")
    assert listed.exit_code == 0, listed.output
    row = [line for line in listed.output.splitlines() if line.startswith(p["proposal_id"])]
    assert len(row) == 1 and "n-a03/pm25" in row[0] and "0.833 / -3.33" in row[0] and row[0].endswith("pending")
    assert "1 messages on the proposals topic are not valid proposals" in listed.output

    before = int(time.time() * 1000)
    accepted = cli(s, "accept", p["proposal_id"][:10])  # a unique prefix will do
    assert accepted.exit_code == 0, accepted.output
    assert f"published n-a03/pm25 v2 drift-{p['proposal_id']} linear" in accepted.output and "(replaces v1)" in accepted.output
    history = read_registry(s.kafka_bootstrap, s.namespace).registry.sensors["n-a03/pm25"].versions
    assert [v.version for v in history] == [1, 2] and history[1].model.coefficients() == p["proposed"]["coefficients"]
    assert before <= history[1].effective_from <= before + 120_000 and history[1].effective_from % 60_000 == 0  # now, next minute
    assert "no pending proposals" in cli(s, "proposals").output
    rows = [line for line in cli(s, "proposals", "--all", "--sensor", "n-a03/pm25").output.splitlines() if line.startswith("cp-")]
    assert len(rows) == 1 and rows[0].endswith("accepted")

    again = cli(s, "accept", p["proposal_id"])
    assert again.exit_code == 1 and "already accepted: n-a03/pm25 version 2" in again.output
    # the file does not list version 2 yet: apply refuses to remove it ...
    removing = cli(s, "apply", str(f), "--backdate")
    assert removing.exit_code == 1 and "n-a03/pm25: version 2 (drift-" in removing.output and "never removed" in removing.output
    # ... and with the YAML accept printed added under the sensor's models, the file agrees with the topic
    printed = yaml.safe_load(accepted.output.split("models:\n", 1)[1])
    assert cli(s, "apply", str(registry_file(f, *printed))).output.count("nothing to publish") == 1

    # a proposal judged on version 1 is stale now that version 2 is the latest
    stale = produce_proposal(s, hours_ago=48)
    assert stale["replaces"] == {"model_id": "colocation-2026-09", "version": 1}
    refused = cli(s, "accept", stale["proposal_id"])
    assert refused.exit_code == 1 and "is stale" in refused.output
    assert read_registry(s.kafka_bootstrap, s.namespace).registry.sensors["n-a03/pm25"].versions == history


def counter(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def produce_minutes(settings: Settings, feed: dict[int, list[dict[str, Any]]], since_min: int, upto_min: int, junk: bool = False) -> None:
    """The feed's minutes [since_min, upto_min) to their partitions, in order."""
    producer = Producer(producer_config(settings.kafka_bootstrap))
    topic = namespaced(STATION_MINUTES, settings.namespace)
    if junk:  # not JSON; not the schema; a station the network does not know
        producer.produce(topic, key=b"junk", value=b"{not json", partition=0)
        producer.produce(topic, key=b"n-a03", value=encode_json({"schema": "jw.station_minute.v1", "station_id": "n-a03"}), partition=0)
        producer.produce(topic, key=b"x-a99", value=encode_json({**minute_doc("n-a01", 0, 1.0), "station_id": "x-a99"}), partition=1)
    for p, docs in feed.items():
        for doc in docs:
            if START + since_min * M <= doc["window_start"] < START + upto_min * M:
                producer.produce(topic, key=doc["station_id"].encode(), value=encode_json(doc), partition=p)
    assert producer.flush(20) == 0


def read_proposal_bytes(settings: Settings, n: int, timeout_s: float = 30.0, settle_s: float = 2.0) -> list[bytes]:
    """At least n proposal values (topic order), then settle_s more to catch an unexpected extra."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"test-read-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([namespaced(CALIBRATION_PROPOSALS, settings.namespace)])
    out: list[bytes] = []
    deadline, settle = time.monotonic() + timeout_s, None
    try:
        while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
            out += [m.value() for m in consumer.consume(100, timeout=0.3) if not m.error()]
            if settle is None and len(out) >= n:
                settle = time.monotonic() + settle_s
    finally:
        consumer.close()
    return out


def test_drift_stage_publishes_the_cores_proposals_once_across_restarts(stack: Any) -> None:
    s = stack.isolated()
    minutes = 10 * 60
    feed, _ = drift_feed(minutes, 5 * 60)  # gain 1 -> 1.2 over 5 h, on to 1.4 at 10 h; 6-h windows every hour
    reference = run(DriftDetector(NETWORK, SHORT, [PAIR]), feed, interleaving(feed, 0))
    assert len(reference) >= 4
    publish(s.kafka_bootstrap, CURRENT.messages(), s.namespace)  # the registry: version 1 in effect
    invalid = {r: counter("jw_drift_invalid_station_minutes_total", {"reason": r}) for r in ("json", "schema", "station")}
    group = f"drift-{uuid.uuid4().hex[:6]}"

    # first half, with bad records: the windows the watermark (6 h - 5 min) has passed
    half = 6 * 60
    produce_minutes(s, feed, 0, half, junk=True)
    first_n = sum(1 for b in reference if json.loads(b)["window_end"] <= START + half * M - SHORT.slack_ms)
    with background.running(DriftStage(s, NETWORK, SHORT, [PAIR], group_id=group).run, "drift-before-restart"):
        before = read_proposal_bytes(s, first_n)
    assert before == reference[:first_n] and first_n >= 1
    assert {r: counter("jw_drift_invalid_station_minutes_total", {"reason": r}) - v for r, v in invalid.items()} == \
        {"json": 1, "schema": 1, "station": 1}

    # the rest, after a restart with the same group: from the committed offsets, only later windows
    produce_minutes(s, feed, half, minutes)
    with background.running(DriftStage(s, NETWORK, SHORT, [PAIR], group_id=group).run, "drift-after-restart"):
        published = read_proposal_bytes(s, len(reference))
    assert published == reference  # same bytes, same order, nothing twice, nothing lost
    assert all(json.loads(b)["replaces"] == {"model_id": "colocation-2026-09", "version": 1} for b in published)

    # a fresh group re-reads and re-evaluates every window: the ids on the topic keep it from publishing again
    repeats = counter("jw_drift_proposals_repeated_total")
    with background.running(DriftStage(s, NETWORK, SHORT, [PAIR], group_id=group + "-fresh").run, "drift-fresh-group"):
        deadline = time.monotonic() + 30
        while counter("jw_drift_proposals_repeated_total") - repeats < len(reference) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert counter("jw_drift_proposals_repeated_total") - repeats == len(reference)
    assert read_proposal_bytes(s, len(reference) + 1, timeout_s=3, settle_s=0) == reference
    assert registry_from_messages(CURRENT.messages(), "x").sensors == read_registry(s.kafka_bootstrap, s.namespace).registry.sensors  # never written
