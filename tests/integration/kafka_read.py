"""Reading a topic back in integration tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer


def read_until(bootstrap: str, topics: list[str], done: Callable[[list[tuple[str, Any]]], bool], timeout_s: float = 60.0) -> list[tuple[str, Any]]:
    """(topic, decoded JSON) of every message from the start, until done(messages) or the timeout.
    A tombstone (an upsert topic's delete) is (topic, None)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-read-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    out: list[tuple[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(out):
            # Batches, so `done` (which may scan everything read so far) runs per batch, not per message.
            batch = [m for m in consumer.consume(1000, timeout=0.5) if not m.error()]
            out.extend((m.topic(), None if m.value() is None else json.loads(m.value())) for m in batch)
    finally:
        consumer.close()
    return out


def read_n(bootstrap: str, topics: list[str], n: int, timeout_s: float = 60.0, settle_s: float = 2.0) -> list[tuple[str, Any]]:
    """At least n messages, then keep reading `settle_s` more to catch any unexpected extra."""
    got = read_until(bootstrap, topics, lambda m: len(m) >= n, timeout_s)
    if len(got) >= n and settle_s:
        more = read_until(bootstrap, topics, lambda m: False, settle_s + 3)
        return more if len(more) > len(got) else got
    return got
