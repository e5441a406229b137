"""The index stage: station hours (from the Flink job) -> station indices, on Kafka.

Low rate (one record per station and minute), so plain Python is fine here
(DESIGN.md). Each record maps to exactly one index by a pure function, so the
stage keeps no state: it produces a batch with an idempotent producer, waits
for Kafka to confirm it, and only then commits the batch's offsets. A crash
replays the batch and gives identical records (deterministic index ids).
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter

from connectors.kafka_io import DecodeError, consumer_config, decode_json, encode_json, ensure_topics, position, producer_config, where
from jobs.indices import index_of_station_hour
from jointwatch.settings import Settings
from schemas.models import validation_errors
from schemas.network import Network
from schemas.topics import INDICES, STATION_HOURS, namespaced

log = logging.getLogger("jointwatch.indices")

INDICES_PRODUCED = Counter("jw_indices_produced_total", "Station indices written", ["index", "outcome"])
INVALID_HOURS = Counter("jw_indices_invalid_station_hours_total", "Station-hour records skipped (not JSON, schema, unknown station)")
DEFAULT_GROUP_ID = "jw-index-stage"


class IndexStage:
    def __init__(self, settings: Settings, network: Network, group_id: str = DEFAULT_GROUP_ID, batch_size: int = 500) -> None:
        self.settings, self.network, self.group_id, self.batch_size = settings, network, group_id, batch_size
        self.source = namespaced(STATION_HOURS, settings.namespace)
        self.target = namespaced(INDICES, settings.namespace)
        self._producer = Producer(producer_config(settings.kafka_bootstrap))

    def run(self, stop: threading.Event) -> None:
        ensure_topics(self.settings.kafka_bootstrap, [STATION_HOURS, INDICES], self.settings.namespace)
        consumer = Consumer(consumer_config(self.settings.kafka_bootstrap, self.group_id))
        consumer.subscribe([self.source])
        log.info("index stage: %s -> %s, group %s", self.source, self.target, self.group_id)
        try:
            while not stop.is_set():
                batch = [m for m in consumer.consume(self.batch_size, timeout=0.5) if self._ok(m)]
                if batch and self._publish(batch):
                    consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
                elif batch:  # Kafka did not confirm: read the batch again
                    for tp in _next_offsets(batch, rewind=True):
                        consumer.seek(tp)
                    stop.wait(1.0)
        finally:
            consumer.close()
            self._producer.flush(10)
            log.info("index stage stopped")

    @staticmethod
    def _ok(msg: Message) -> bool:
        if msg.error():
            log.warning("Kafka consumer: %s", msg.error())
            return False
        return True

    def _publish(self, batch: list[Message]) -> bool:
        errors: list[KafkaError] = []
        for msg in batch:
            try:
                doc = decode_json(msg.value())
                problems = validation_errors("station_hour", doc)
                if problems:
                    raise ValueError("; ".join(problems))
                index = index_of_station_hour(doc, self.network)
            except (DecodeError, ValueError, KeyError) as exc:
                # Skipped, not lost: the record stays in Kafka at its offset.
                INVALID_HOURS.inc()
                log.error("skipped %s: %s", where(msg), exc)
                continue
            INDICES_PRODUCED.labels(index["index"], "insufficient" if index["insufficient_data"] else "value").inc()
            self._producer.produce(
                self.target, key=index["station_id"], value=encode_json(index),
                on_delivery=lambda err, _m: errors.append(err) if err else None,
            )
        unflushed = self._producer.flush(30)
        if unflushed or errors:
            log.error("Kafka did not confirm %d indices (%s); the batch will be read again", unflushed + len(errors), errors[:3])
            return False
        return True


def _next_offsets(batch: list[Message], rewind: bool = False) -> list[TopicPartition]:
    """Per partition: the offset after the batch (to commit), or its first offset (to read again)."""
    out: dict[tuple[str, int], int] = {}
    for msg in batch:
        topic, partition, offset = position(msg)
        key = (topic, partition)
        out[key] = min(out.get(key, offset), offset) if rewind else max(out.get(key, offset + 1), offset + 1)
    return [TopicPartition(t, p, o) for (t, p), o in out.items()]
