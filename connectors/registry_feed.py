"""The calibration registry as the job sees it: jw.control.calibration, kept current.

`RegistryFeed.start()` reads the compacted topic to its end before returning (so the
first minute calibrated already sees every version published before the job
started: a replay uses the full history), then a daemon thread follows the topic
and swaps in a new immutable `Registry` on each message. Readers take
`feed.registry`, one attribute read, never a half-updated registry.

An invalid message (not JSON, not jw.calibration_model.v1, bad coefficients) is
skipped with a log line and counted; the sensor keeps its previous history.

Timing: a version reaches the minutes the job calibrates after the feed has read it
(within `poll_s`). A version whose effective_from is already past by then reaches
the earlier minutes only in a replay; `jointwatch calibration apply` refuses such
backdated versions unless asked (--backdate).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from calibration.registry import Registry, Unlisted, registry_from_messages
from connectors.kafka_io import DecodeError, consumer_config, decode_json, read_latest
from schemas.errors import ConfigError

log = logging.getLogger("jointwatch.calibration.feed")


class RegistryFeed:
    def __init__(self, bootstrap: str, topic: str, unlisted: Unlisted = "pass", poll_s: float = 0.2, group_id: str = "jw-calibration-feed") -> None:
        self.bootstrap, self.topic, self.unlisted, self.poll_s, self.group_id = bootstrap, topic, unlisted, poll_s, group_id
        self._messages: dict[str, dict[str, Any]] = {}
        self.registry: Registry = registry_from_messages([], topic, unlisted)
        self.invalid = 0  # messages skipped
        self.updates = 0  # registries swapped in after the start
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RegistryFeed:
        for key, raw in read_latest(self.bootstrap, self.topic, f"{self.group_id}-load").items():
            self._take(key, raw)
        self.registry = self._build()
        log.info("calibration registry %s: %d sensors, %d versions", self.topic, len(self.registry.sensors), len(self.registry.entries))
        self._thread = threading.Thread(target=self._follow, name="calibration-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _take(self, key: bytes, raw: bytes | None) -> bool:
        """Validate one message; True when it changed the registry."""
        try:
            doc = decode_json(raw)
            registry_from_messages([doc], self.topic, self.unlisted)  # validates, raises on the first problem
        except (DecodeError, ConfigError, AttributeError) as exc:
            self.invalid += 1
            log.warning("calibration message %r skipped: %s", key, exc)
            return False
        if self._messages.get(doc["sensor"]) == doc:
            return False
        self._messages[doc["sensor"]] = doc
        return True

    def _build(self) -> Registry:
        return registry_from_messages(list(self._messages.values()), self.topic, self.unlisted)

    def _follow(self) -> None:
        # The load above read to the end it saw; messages since then are at or after it. Reading
        # from the end of now could skip one published in between, so the follower starts from
        # the beginning again: re-reading a compacted control topic is cheap, and _take ignores repeats.
        consumer = Consumer(consumer_config(self.bootstrap, f"{self.group_id}-follow"))
        try:
            meta = consumer.list_topics(self.topic, timeout=10).topics[self.topic]
            consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])
            while not self._stop.is_set():
                changed = False
                for msg in consumer.consume(100, timeout=self.poll_s):
                    if not msg.error() and msg.key() is not None:
                        changed |= self._take(msg.key(), msg.value())
                if changed:
                    self.registry = self._build()
                    self.updates += 1
                    log.info("calibration registry updated: %d sensors, %d versions", len(self.registry.sensors), len(self.registry.entries))
        except Exception:  # noqa: BLE001 - a dead follower must be visible, the job keeps the last registry
            log.exception("calibration feed stopped following %s", self.topic)
        finally:
            consumer.close()

