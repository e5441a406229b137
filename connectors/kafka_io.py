"""Kafka plumbing shared by the services: client configs, topic creation, JSON codec."""

from __future__ import annotations

from dataclasses import dataclass

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas.topics import ALL_TOPICS, Topic, namespaced


class DecodeError(ValueError):
    """A Kafka message value is not the JSON document it should be."""


# librdkafka's own messages (connection failures, retries) go through logging like everything else.
KAFKA_LOG = logging.getLogger("jointwatch.kafka")


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    """Idempotent producer: retries never duplicate or reorder within a partition."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "logger": KAFKA_LOG,
        **extra,
    }


def consumer_config(bootstrap: str, group_id: str, **extra: Any) -> dict[str, Any]:
    """Manual commit: a service commits only what it has fully handled."""
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "logger": KAFKA_LOG,
        **extra,
    }


def ensure_topics(bootstrap: str, topics: Iterable[Topic] = ALL_TOPICS, namespace: str = "", timeout_s: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet (single-broker replication); return the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wanted = {namespaced(t, namespace): t for t in topics}
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [
        NewTopic(name, num_partitions=t.partitions, replication_factor=1, config=topic_config(t))
        for name, t in wanted.items()
        if name not in existing
    ]
    created: list[str] = []
    for name, future in (admin.create_topics(missing, operation_timeout=timeout_s) if missing else {}).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another service won the race
                raise
    _wait_until_listed(admin, set(wanted), timeout_s)
    return created


def topic_config(t: Topic) -> dict[str, str]:
    return {**({"cleanup.policy": "compact"} if t.compacted else {}), **dict(t.config)}


def _wait_until_listed(admin: AdminClient, names: set[str], timeout_s: float) -> None:
    # Creation is acknowledged before every broker serves the metadata; consumers
    # subscribing in between would see UNKNOWN_TOPIC_OR_PART.
    deadline = time.monotonic() + timeout_s
    while True:
        missing = names - set(admin.list_topics(timeout=timeout_s).topics)
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {timeout_s} s: {sorted(missing)}")
        time.sleep(0.1)


_COORDINATOR_STARTING = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE}


def committed_offsets(bootstrap: str, group_id: str, topics: Iterable[Topic], namespace: str = "", timeout_s: float = 20.0) -> dict[str, int]:
    """Offsets a consumer group has committed, summed over each topic's partitions (un-namespaced names).

    Reads without joining the group, so it does not disturb the members; rides
    out the group coordinator's start-up on a fresh broker.
    """
    wanted = list(topics)
    parts = [TopicPartition(namespaced(t, namespace), p) for t in wanted for p in range(t.partitions)]
    consumer = Consumer(consumer_config(bootstrap, group_id))
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                result = consumer.committed(parts, timeout=timeout_s)
                break
            except KafkaException as exc:
                if exc.args[0].code() not in _COORDINATOR_STARTING or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()
    names = {namespaced(t, namespace): t.name for t in wanted}
    totals = dict.fromkeys(names.values(), 0)
    for tp in result:
        totals[names[tp.topic]] += max(tp.offset, 0)  # negative = nothing committed yet
    return totals


def encode_json(doc: Any) -> bytes:
    """Compact UTF-8 JSON, keys in the order given (deterministic for the same dict)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_json(raw: bytes | None) -> Any:
    """Parse a message value; DecodeError says why it is not JSON (callers add the position)."""
    if raw is None:
        raise DecodeError("empty message value (tombstone)")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not JSON: {exc}") from None


def position(msg: Message) -> tuple[str, int, int]:
    """(topic, partition, offset) of a consumed message; only error events lack them."""
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError(f"not a consumed message: {msg.error()}")
    return topic, partition, offset


def where(msg: Message) -> str:
    """Position of a consumed message, for logs and errors."""
    topic, partition, offset = position(msg)
    return f"{topic}[{partition}]@{offset}"


def message_counts(bootstrap: str, topics: Iterable[Topic], namespace: str = "", timeout_s: float = 10.0) -> dict[str, int]:
    """Messages ever written to each topic (end offsets summed over partitions; un-namespaced names)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "jw-message-counts"})
    try:
        return {
            t.name: sum(consumer.get_watermark_offsets(TopicPartition(namespaced(t, namespace), p), timeout=timeout_s)[1] for p in range(t.partitions))
            for t in topics
        }
    finally:
        consumer.close()


def read_latest(bootstrap: str, topic: str, group_id: str, timeout_s: float = 60.0, **extra: Any) -> dict[bytes, bytes | None]:
    """The latest value per key of a (compacted) topic, read from its start to the end it had when
    called (None for a key whose latest message is a tombstone). For state a service restores at start."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in read_all(bootstrap, topic, group_id, timeout_s, **extra):
        if key is not None:
            latest[key] = value  # a key lives in one partition, read in offset order: the last is the latest
    return latest


def read_all(bootstrap: str, topic: str, group_id: str, timeout_s: float = 60.0, **extra: Any) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) of a topic from its start to (at least) the end it had when called, each
    partition in offset order. For logs read whole at start (e.g. which proposals exist)."""
    consumer = Consumer(consumer_config(bootstrap, group_id, **extra))
    out: list[tuple[bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:  # a topic just created may not have its partition leaders yet
                partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
                ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
                break
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        todo = {p for p, high in ends.items() if high > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(todo)])
        while todo:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not read to its end within {timeout_s:.0f} s")
            # consume() waits the whole timeout unless the batch fills: short, so a small topic is read in ~0.2 s, not 1 s
            for msg in consumer.consume(500, timeout=0.2):
                if not msg.error():
                    out.append((msg.key(), msg.value()))
            todo = {tp.partition for tp in consumer.position([TopicPartition(topic, p) for p in todo]) if tp.offset < ends[tp.partition]}
    finally:
        consumer.close()
    return out


@dataclass(frozen=True)
class Resume:
    """Where an event-time stage that keeps its state in its input topic resumes (see apportion/stage.py)."""

    partitions: list[int]
    starts: dict[int, int]  # per partition: the committed offset, else the earliest one kept
    metadata: list[str | None]  # the commits' metadata (what the stage had emitted)
    with_data: list[int]  # partitions holding records at or after their start


def resume_positions(consumer: Consumer, topic: str, timeout_s: float = 30.0) -> Resume:
    deadline = time.monotonic() + timeout_s
    while True:  # a fresh topic may not have its partition leaders or group coordinator yet
        try:
            partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
            committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
            marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    starts = {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][0] for tp in committed}
    return Resume(partitions, starts, [tp.metadata for tp in committed], [p for p in partitions if marks[p][1] > starts[p]])


def decode_record(msg: Message, schema_name: str) -> Any:
    """A consumed record's JSON, checked against its schema: DecodeError (not JSON) or ValueError (the schema's complaints)."""
    from schemas.models import validation_errors

    doc = decode_json(msg.value())
    problems = validation_errors(schema_name, doc)
    if problems:
        raise ValueError("; ".join(problems))
    return doc


class UnknownStation(ValueError):
    """A record of a station the network does not know: a stage's `offer` raises it, offer_record counts it."""


def offer_record(msg: Message, schema_name: str, offer: Callable[[int, int, Any], str], skip: Callable[[int, int], None],
                 invalid: Any, log: logging.Logger) -> tuple[Any, str] | None:
    """Decode a consumed record, check it against its schema and hand it to `offer(partition, offset, doc)`:
    (doc, what offer returned). A bad record (not JSON, not the schema, an UnknownStation) is passed to
    `skip`, counted in the `invalid` counter by reason (json / station / schema) and logged, and the stage
    goes on: None, as for a consumer error event."""
    if msg.error():
        log.warning("Kafka consumer: %s", msg.error())
        return None
    _, partition, offset = position(msg)
    try:
        doc = decode_record(msg, schema_name)
        return doc, offer(partition, offset, doc)
    except (DecodeError, ValueError) as exc:
        skip(partition, offset)
        invalid.labels("json" if isinstance(exc, DecodeError) else "station" if isinstance(exc, UnknownStation) else "schema").inc()
        log.error("skipped %s: %s", where(msg), exc)
        return None


def commit_with_metadata(consumer: Consumer, topic: str, offsets: Mapping[int, int], metadata: str) -> None:
    """Commit per partition an offset, all with the same metadata (what a stage had emitted), synchronously."""
    consumer.commit(offsets=[TopicPartition(topic, p, o, metadata=metadata) for p, o in offsets.items()], asynchronous=False)
