"""The alert stage: jw.indices (+ rules updates) -> the tier state machine -> jw.alerts.

Low rate (a few records per station and minute), so plain Python (DESIGN.md).
One instance sees every station: region-level alerts need all of a region.

Exactly once with Kafka transactions, the way Kafka Streams does it: the alerts
of a step and a snapshot of the engine (state machine, ordering buffer, and the
input offsets it has consumed) are committed in one transaction to jw.alerts and
the compacted jw.alerts.state. A restart restores the last committed snapshot
and reads on from its offsets, so an alert is published once, or, after a crash
mid-transaction, not at all and then again from the same input with the same id.
Readers (the router, the sink) read committed messages only (librdkafka default).

With `apportionment` on (the default), the stage also reads jw.apportionment: the
region windows and progress markers of the apportionment stage name each air
alert's origin region (lead) and affected regions (assist), see alerts/attribution.py.
Its read offsets are part of the same snapshot.
"""

from __future__ import annotations

import getpass
import logging
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from alerts.affected import AssistPolicy, NetworkAssist
from alerts.attribution import ApportionedAssist, ApportionmentTable
from alerts.engine import AlertEngine, EngineConfig, StaleRules
from alerts.observations import alert_record
from alerts.tiers.rules import load_rules
from connectors.kafka_io import DecodeError, consumer_config, decode_json, encode_json, ensure_topics, producer_config, read_latest, where
from jointwatch.settings import Settings
from schemas.errors import ConfigError, read_yaml
from schemas.models import TierRulesUpdate, is_progress, validation_errors
from schemas.network import Network
from schemas.topics import ALERT_STATE, ALERTS, APPORTIONMENT, INDICES, STATE_MAX_BYTES, TIER_RULES, namespaced

log = logging.getLogger("jointwatch.alerts.stage")

DEFAULT_GROUP_ID = "jw-alert-stage"

INDICES_READ = Counter("jw_alert_stage_indices_total", "Index records read", ["outcome"])
TRANSITIONS = Counter("jw_alert_stage_transitions_total", "Tier transitions published", ["kind", "action", "tier"])
RULE_UPDATES = Counter("jw_alert_stage_rule_updates_total", "Tier rules updates read from the control topic", ["outcome"])
BEHIND = Gauge("jw_alert_stage_observations_behind", "Observations that arrived after their event time was released")
WATERMARK = Gauge("jw_alert_stage_watermark_ms", "Event time up to which observations were released (UTC epoch ms)")
SNAPSHOT_BYTES = Gauge("jw_alert_stage_snapshot_bytes", "Size of the last committed engine snapshot")
APPORTIONMENT_READ = Counter("jw_alert_stage_apportionment_total", "jw.apportionment messages read", ["outcome"])
APPORTION_TIMEOUTS = Gauge("jw_alert_stage_apportion_timeouts", "Times the watermark went on without apportionment (stage down or far behind)")
APPORTION_LATE = Gauge("jw_alert_stage_apportion_late", "Apportionment records read after alerts that needed them were released")


class AlertStage:
    def __init__(
        self, settings: Settings, network: Network, *, group_id: str = DEFAULT_GROUP_ID, rules_file: Path | None = None,
        config: EngineConfig = EngineConfig(), policy: AssistPolicy = AssistPolicy(), snapshot_interval_s: float = 10.0,
        apportionment: bool = True,
    ) -> None:
        self.settings, self.network, self.group_id, self.config = settings, network, group_id, config
        self.rules_file = rules_file or settings.tier_rules_file
        self.policy, self.apportionment = policy, apportionment
        self.snapshot_interval_s = snapshot_interval_s
        ns = settings.namespace
        self.source, self.target = namespaced(INDICES, ns), namespaced(ALERTS, ns)
        self.apportion_topic = namespaced(APPORTIONMENT, ns)
        self.state_topic, self.rules_topic = namespaced(ALERT_STATE, ns), namespaced(TIER_RULES, ns)
        self.rules_doc = read_yaml(self.rules_file)
        load_rules(self.rules_file, network)  # fail fast, before any Kafka work, on a bad file
        self.ready = threading.Event()  # set once the snapshot is restored and the inputs assigned

    # ------------------------------------------------------------------ main loop

    def run(self, stop: threading.Event) -> None:
        bootstrap = self.settings.kafka_bootstrap
        ensure_topics(bootstrap, [INDICES, ALERTS, ALERT_STATE, TIER_RULES, APPORTIONMENT], self.settings.namespace)
        producer = Producer(producer_config(
            bootstrap, **{"transactional.id": f"{self.group_id}@{self.settings.namespace}", "compression.type": "lz4",
                          "message.max.bytes": STATE_MAX_BYTES, "linger.ms": 0}))
        producer.init_transactions(30)  # fences a previous instance and aborts its open transaction
        committed = self._restore(bootstrap)
        engine, offsets = self._engine(committed)
        inputs = Consumer(consumer_config(bootstrap, self.group_id, **{"isolation.level": "read_committed"}))
        control = Consumer(consumer_config(bootstrap, f"{self.group_id}-rules"))
        control.assign([TopicPartition(self.rules_topic, 0, OFFSET_BEGINNING)])
        self._assign(inputs, engine, offsets)
        self.ready.set()
        log.info("alert stage: %s -> %s, rules %s v%d, restored %s", self.source, self.target, engine.rules.rule_set_id,
                 engine.rules.version, f"at event time {engine.released_to}" if committed else "nothing (fresh start)")
        last_commit = time.monotonic()
        dirty = False
        try:
            while not stop.is_set():
                for msg in control.consume(20, timeout=0):
                    self._rules_update(engine, msg)
                    dirty = True
                msgs = inputs.consume(500, timeout=0.5)
                now = time.monotonic()
                for msg in msgs:
                    if self._offer(engine, msg, now):
                        offsets[(msg.topic(), msg.partition())] = msg.offset() + 1
                        dirty = True
                transitions = engine.advance(now)
                if transitions or (dirty and now - last_commit >= self.snapshot_interval_s):
                    try:
                        committed = self._commit(producer, engine, offsets, transitions)
                    except KafkaException as exc:
                        log.error("transaction failed (%s): back to the last committed snapshot", exc)
                        engine, offsets = self._engine(committed)
                        self._assign(inputs, engine, offsets)
                        stop.wait(1.0)
                        continue
                    inputs.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True)  # lag, for monitoring
                    last_commit, dirty = now, False
                BEHIND.set(engine.behind)
                APPORTION_TIMEOUTS.set(engine.apportion_timeouts)
                APPORTION_LATE.set(engine.apportion_late)
            if dirty:  # a clean stop leaves nothing to re-read
                self._commit(producer, engine, offsets, [])
        finally:
            inputs.close()
            control.close()
            producer.flush(10)
            log.info("alert stage stopped")

    # ------------------------------------------------------------------ steps

    def _engine(self, snapshot: Mapping[str, Any] | None) -> tuple[AlertEngine, dict[tuple[str, int], int]]:
        """A fresh engine, or the snapshot's, with the input offsets (topic, partition) -> next offset."""
        fallback = NetworkAssist(self.network, self.policy)
        table = ApportionmentTable() if self.apportionment else None
        apportion = ApportionedAssist(table, fallback) if table is not None else fallback
        if snapshot is None:
            engine = AlertEngine(self.network, load_rules(self.rules_file, self.network), self.rules_doc, self.config, apportion, table)
        else:
            engine = AlertEngine.restore(snapshot, self.network, self.config, apportion, table)
            try:  # a newer rules file deployed since the snapshot applies from here on
                engine.offer_rules(self.rules_doc, None, str(self.rules_file))
            except StaleRules:
                pass
        snap = snapshot or {}
        offsets = {(self.source, int(p)): int(o) for p, o in snap.get("offsets", {}).items()}
        offsets |= {(self.apportion_topic, int(p)): int(o) for p, o in (snap.get("apportion_offsets") or {}).items()}
        return engine, offsets

    def _assign(self, consumer: Consumer, engine: AlertEngine, offsets: Mapping[tuple[str, int], int]) -> None:
        topics = [self.source] + ([self.apportion_topic] if engine.table is not None else [])
        partitions = {t: sorted(consumer.list_topics(t, timeout=10).topics[t].partitions) for t in topics}
        if engine.table is not None:
            engine.table.expect(str(p) for p in partitions[self.apportion_topic])
        consumer.assign([TopicPartition(t, p, offsets.get((t, p), OFFSET_BEGINNING)) for t in topics for p in partitions[t]])

    def _offer(self, engine: AlertEngine, msg: Message, now: float) -> bool:
        """Feed one index record or apportionment message; False for a consumer error (nothing consumed)."""
        if msg.error():
            log.warning("Kafka consumer: %s", msg.error())
            return False
        if msg.topic() == self.apportion_topic:
            self._offer_apportionment(engine, msg)
            return True
        try:
            doc = decode_json(msg.value())
            problems = validation_errors("index", doc)
            if problems:
                raise ValueError("not a valid index: " + "; ".join(problems[:3]))
            if doc["station_id"] not in self.network.stations:
                raise ValueError(f"unknown station {doc['station_id']!r}")
        except (DecodeError, ValueError) as exc:
            INDICES_READ.labels("invalid").inc()  # skipped, not lost: it stays in Kafka at its offset
            log.error("skipped %s: %s", where(msg), exc)
            return True
        engine.offer(str(msg.partition()), doc, now)
        INDICES_READ.labels("ok").inc()
        return True

    def _offer_apportionment(self, engine: AlertEngine, msg: Message) -> None:
        try:
            doc = decode_json(msg.value())
            problems = validation_errors("apportionment_progress" if is_progress(doc) else "apportionment", doc)
            if problems:
                raise ValueError("not a valid apportionment message: " + "; ".join(problems[:3]))
        except (DecodeError, ValueError) as exc:
            APPORTIONMENT_READ.labels("invalid").inc()
            log.error("skipped %s: %s", where(msg), exc)
            return
        APPORTIONMENT_READ.labels(engine.offer_apportionment(str(msg.partition()), doc)).inc()

    def _rules_update(self, engine: AlertEngine, msg: Message) -> None:
        if msg.error():
            log.warning("Kafka consumer (rules): %s", msg.error())
            return
        source = f"{where(msg)}"
        try:
            update: TierRulesUpdate = decode_json(msg.value())
            problems = validation_errors("tier_rules_update", update)
            if problems:
                raise ValueError("not a valid tier rules update: " + "; ".join(problems[:3]))
            pending = engine.offer_rules(update["rules"], update["effective_from"], source)
        except StaleRules as exc:
            RULE_UPDATES.labels("stale").inc()
            log.info("ignored: %s", exc)
            return
        except (DecodeError, ValueError, ConfigError) as exc:  # the running rules stay in force
            RULE_UPDATES.labels("rejected").inc()
            log.error("rejected tier rules update %s: %s", source, exc)
            return
        RULE_UPDATES.labels("accepted").inc()
        log.info("accepted tier rules %s v%d from %s, effective from event time %d",
                 pending.rules.rule_set_id, pending.rules.version, update["published_by"], pending.effective_from)

    def _commit(self, producer: Producer, engine: AlertEngine, offsets: Mapping[tuple[str, int], int], transitions: list) -> dict[str, Any]:
        def of(topic: str) -> dict[str, int]:
            return {str(p): o for (t, p), o in sorted(offsets.items()) if t == topic}

        snapshot = {**engine.snapshot(), "group_id": self.group_id, "offsets": of(self.source), "apportion_offsets": of(self.apportion_topic)}
        body = encode_json(snapshot)
        producer.begin_transaction()
        try:
            for t in transitions:
                producer.produce(self.target, key=t.origin_region.encode(), value=encode_json(alert_record(t)))
            producer.produce(self.state_topic, key=self.group_id.encode(), value=body)
            producer.commit_transaction(30)
        except KafkaException:
            try:
                producer.abort_transaction(30)
            except KafkaException as exc:
                log.error("abort failed: %s", exc)
            raise
        for t in transitions:
            TRANSITIONS.labels(t.kind, t.action, t.tier).inc()
            log.info("%s %s %s %s -> %s: %s (alert %s)", t.action, t.scope, t.subject, f"{t.kind}/{t.indicator}", t.tier, t.reason, t.alert_id)
        if engine.released_to is not None:
            WATERMARK.set(engine.released_to)
        SNAPSHOT_BYTES.set(len(body))
        return snapshot

    def _restore(self, bootstrap: str) -> dict[str, Any] | None:
        """The last committed snapshot of this stage, or None."""
        latest = read_latest(bootstrap, self.state_topic, f"{self.group_id}-restore", **{"isolation.level": "read_committed"})
        body = latest.get(self.group_id.encode())
        return decode_json(body) if body is not None else None


def publish_rules(settings: Settings, rules_doc: Mapping[str, Any], effective_from: int | None) -> None:
    """Send a (validated) rules document to the control topic; raises RuntimeError if Kafka does not confirm."""
    ensure_topics(settings.kafka_bootstrap, [TIER_RULES], settings.namespace)
    update: TierRulesUpdate = {
        "schema": "jw.tier_rules_update.v1", "rules": dict(rules_doc), "effective_from": effective_from,
        "published_by": f"{getpass.getuser()}@{socket.gethostname()}",
    }
    errors: list[Any] = []
    producer = Producer(producer_config(settings.kafka_bootstrap))
    producer.produce(namespaced(TIER_RULES, settings.namespace), key=str(rules_doc["rule_set_id"]).encode(), value=encode_json(update),
                     on_delivery=lambda err, _m: errors.append(err) if err else None)
    if producer.flush(30) or errors:
        raise RuntimeError(f"Kafka did not confirm the rules update: {errors or 'timeout'}")
