"""Kafka I/O of the calibration commands: the registry on jw.control.calibration (read to its
end), the proposals on jw.calibration.proposals, and publishing sensor histories.

Reading uses connectors.kafka_io (read_latest / read_all) with a throw-away consumer group, so
it never disturbs a running stage's offsets.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from calibration.registry import Registry, registry_from_messages
from connectors.kafka_io import DecodeError, decode_json, encode_json, ensure_topics, producer_config, read_all, read_latest
from schemas.calibration import CalibrationModelMessage, CalibrationProposal
from schemas.errors import ConfigError
from schemas.models import validation_errors
from schemas.topics import CALIBRATION, CALIBRATION_PROPOSALS, namespaced


@dataclass(frozen=True)
class TopicRegistry:
    """The registry the topic holds: every valid latest message per sensor, and what was not valid."""

    registry: Registry
    registry_ids: dict[str, str]  # sensor -> registry_id of its message
    invalid: list[str] = field(default_factory=list)  # 'key: reason' of messages left out


def _group(name: str) -> str:
    return f"jw-calibration-{name}-{uuid.uuid4().hex[:8]}"


def read_registry(bootstrap: str, namespace: str = "") -> TopicRegistry:
    """The latest message of every sensor on the control topic, validated one by one (an invalid
    one is left out and named in `invalid`, as the job's registry feed skips it)."""
    topic = namespaced(CALIBRATION, namespace)
    ensure_topics(bootstrap, [CALIBRATION], namespace)
    docs: list[dict[str, Any]] = []
    invalid: list[str] = []
    for key, raw in sorted(read_latest(bootstrap, topic, _group("read")).items()):
        name = key.decode(errors="replace")
        if raw is None:
            continue  # a tombstone: nothing left for that key
        try:
            doc = decode_json(raw)
            registry_from_messages([doc], topic)  # validates, raises on the first problem
        except (DecodeError, ConfigError, AttributeError) as exc:
            invalid.append(f"{name}: {exc}")
            continue
        docs.append(doc)
    registry = registry_from_messages(docs, topic, "pass", topic)
    return TopicRegistry(registry, {d["sensor"]: d["registry_id"] for d in docs}, invalid)


def read_proposals(bootstrap: str, namespace: str = "") -> tuple[list[CalibrationProposal], int]:
    """Every valid proposal on the topic once (first copy by id, topic order), and how many messages were not valid."""
    topic = namespaced(CALIBRATION_PROPOSALS, namespace)
    ensure_topics(bootstrap, [CALIBRATION_PROPOSALS], namespace)
    seen: dict[str, CalibrationProposal] = {}
    bad = 0
    for _, raw in read_all(bootstrap, topic, _group("proposals")):
        try:
            doc = decode_json(raw)
        except DecodeError:
            bad += 1
            continue
        if validation_errors("calibration_proposal", doc):
            bad += 1
            continue
        seen.setdefault(doc["proposal_id"], doc)
    return list(seen.values()), bad


def publish(bootstrap: str, messages: Iterable[CalibrationModelMessage], namespace: str = "") -> None:
    """Publish sensor histories (key sensor), each confirmed by Kafka; RuntimeError otherwise."""
    topic = namespaced(CALIBRATION, namespace)
    ensure_topics(bootstrap, [CALIBRATION], namespace)
    producer = Producer(producer_config(bootstrap))
    errors: list[KafkaError] = []

    def delivered(err: KafkaError | None, _m: Message) -> None:
        if err:
            errors.append(err)

    for msg in messages:
        problems = validation_errors("calibration_model", msg)
        if problems:
            raise RuntimeError(f"not publishing an invalid message for {msg['sensor']}: {'; '.join(problems)}")
        producer.produce(topic, key=msg["sensor"], value=encode_json(msg), on_delivery=delivered)
    unflushed = producer.flush(30)
    if unflushed or errors:
        raise RuntimeError(f"Kafka did not confirm {unflushed + len(errors)} calibration messages on {topic}: {errors[:3]}")
