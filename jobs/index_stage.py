"""The index stage: station windows (from the Flink job) -> station indices, on Kafka.

Reads both station topics: rolling hours (jw.readings.station1h, one record per
station and minute -> aqi_realtime / water_class_realtime) and clock hours
(jw.readings.station_clock1h, one per station and hour -> aqi_hourly / water_class,
plus aqi_daily at local midnight). Low rate, so plain Python is fine here
(DESIGN.md). Each record maps to its indices by a pure function, so the stage
keeps no state: it produces a batch with an idempotent producer, waits for Kafka
to confirm it, and only then commits the batch's offsets. A crash replays the
batch and gives identical records (deterministic index ids).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter

from connectors.kafka_io import DecodeError, consumer_config, decode_json, encode_json, ensure_topics, position, producer_config, where
from jobs.indices import index_of_station_hour, indices_of_station_clock_hour
from jointwatch.settings import Settings
from schemas.models import Index, validation_errors
from schemas.network import Network
from schemas.topics import INDICES, STATION_CLOCK_HOURS, STATION_HOURS, Topic, namespaced

log = logging.getLogger("jointwatch.indices")

INDICES_PRODUCED = Counter("jw_indices_produced_total", "Station indices written", ["index", "outcome"])
INVALID_HOURS = Counter("jw_indices_invalid_station_hours_total", "Station-hour / clock-hour records skipped (not JSON, schema, unknown station)")
DEFAULT_GROUP_ID = "jw-index-stage"


class IndexStage:
    def __init__(self, settings: Settings, network: Network, group_id: str = DEFAULT_GROUP_ID, batch_size: int = 500) -> None:
        self.settings, self.network, self.group_id, self.batch_size = settings, network, group_id, batch_size
        # topic name -> (schema of its records, record -> indices)
        self.sources: dict[str, tuple[str, Callable[[Any, Network], list[Index]]]] = {
            namespaced(STATION_HOURS, settings.namespace): ("station_hour", lambda doc, net: [index_of_station_hour(doc, net)]),
            namespaced(STATION_CLOCK_HOURS, settings.namespace): ("station_clock_hour", indices_of_station_clock_hour),
        }
        self.target = namespaced(INDICES, settings.namespace)
        self._producer = Producer(producer_config(settings.kafka_bootstrap))

    def run(self, stop: threading.Event) -> None:
        topics: list[Topic] = [STATION_HOURS, STATION_CLOCK_HOURS, INDICES]
        ensure_topics(self.settings.kafka_bootstrap, topics, self.settings.namespace)
        consumer = Consumer(consumer_config(self.settings.kafka_bootstrap, self.group_id))
        consumer.subscribe(list(self.sources))
        log.info("index stage: %s -> %s, group %s", ", ".join(self.sources), self.target, self.group_id)
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
                schema, to_indices = self.sources[msg.topic()]
                doc = decode_json(msg.value())
                problems = validation_errors(schema, doc)
                if problems:
                    raise ValueError("; ".join(problems))
                indices = to_indices(doc, self.network)
            except (DecodeError, ValueError, KeyError) as exc:
                # Skipped, not lost: the record stays in Kafka at its offset.
                INVALID_HOURS.inc()
                log.error("skipped %s: %s", where(msg), exc)
                continue
            for index in indices:
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
