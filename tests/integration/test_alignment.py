"""Adversarial alignment on the real job: duplicated bursts after a reconnect (one copy
corrected by a slightly different clock offset), out-of-order delivery within the allowed
out-of-orderness, a clock-corrected device, readings beyond the out-of-orderness, and a
station offline for a while that then replays its backlog. Readings go straight to Kafka (exact times and values);
what the job publishes is compared with a numpy reference, and every reading is accounted
for: distinct readings in the one-minute aggregates + duplicates + late = input.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from connectors.kafka_io import producer_config
from jointwatch.stack.flink import start_embedded_job
from schemas.models import validation_errors
from schemas.topics import READINGS_ALIGNED, READINGS_LATE, READINGS_RAW, namespaced
from tests.integration.kafka_read import read_until
from tests.samples import T0

pytestmark = [pytest.mark.integration, pytest.mark.flink]

MINUTE = 60_000
DUPED, JUMBLED, OFFLINE = "n-a01", "n-a02", "n-a03"


def reading(station: str, t: int, value: float, offset_ms: int = 0) -> dict[str, Any]:
    """A reading as the bridge makes it; offset_ms: the bridge corrected the device's clock by that much."""
    device = t + offset_ms
    doc = {
        "schema": "jw.reading.v2", "reading_id": f"{station}/pm25/{device}", "station_id": station, "region": "north", "medium": "air",
        "parameter": "pm25", "value": value, "unit": "ug/m3", "event_time": t, "received_at": t + 500, "device_time": str(device),
        "time_basis": "epoch_ms", "seq": None, "status": "N", "clock_corrected": offset_ms != 0, "clock_offset_ms": offset_ms,
    }
    assert validation_errors("reading", doc) == []
    return doc


def stream(minutes: range, rng: random.Random) -> list[dict[str, Any]]:
    """Every station every 10 s; the jumbled one's readings shuffled within 20 s (< 30 s out-of-orderness)."""
    out = []
    for m in minutes:
        for k in range(6):
            t = T0 + m * MINUTE + k * 10_000
            for station in (DUPED, JUMBLED, OFFLINE):
                if station == OFFLINE and 10 <= m < 20:
                    continue  # offline: its backlog comes later
                offset = 180_000 if station == JUMBLED and m >= 30 else 0  # its clock ran 3 min fast from minute 30 (corrected)
                r = reading(station, t, round(20 + 10 * np.sin((m * 6 + k) / 9) + rng.random(), 3), offset)
                out.append(r)
                if station == DUPED and 10 <= m < 20:
                    # store-and-forward re-sent it twice after a reconnect; one copy got a 1 s different clock correction
                    out += [dict(r), {**r, "event_time": t + 1_000, "clock_corrected": True, "clock_offset_ms": -1_000}]
    jumbled = [r for r in out if r["station_id"] == JUMBLED]
    for i in range(0, len(jumbled), 3):
        block = jumbled[i:i + 3]
        rng.shuffle(block)
        jumbled[i:i + 3] = block
    rest = iter(jumbled)
    return [next(rest) if r["station_id"] == JUMBLED else r for r in out]


def produce(producer: Producer, topic: str, docs: list[dict[str, Any]]) -> None:
    for r in docs:
        producer.produce(topic, key=r["station_id"], value=json.dumps(r))
        producer.poll(0)
    assert producer.flush(30) == 0


def test_duplicates_disorder_lateness_and_backlog_are_all_accounted_for(stack) -> None:
    s = stack.isolated()
    rng = random.Random(5)
    raw = namespaced(READINGS_RAW, s.namespace)
    aligned_topic, late_topic = namespaced(READINGS_ALIGNED, s.namespace), namespaced(READINGS_LATE, s.namespace)
    first, second = stream(range(0, 40), rng), stream(range(40, 60), rng)
    # Sent after the job has closed minute 35: beyond the out-of-orderness, so late, never dropped.
    late_resend = [reading(DUPED, T0 + 5 * MINUTE, 99.0)]
    backlog = [reading(OFFLINE, T0 + m * MINUTE + k * 10_000, 30.0 + m + k) for m in range(10, 20) for k in range(6)]
    producer = Producer(producer_config(s.kafka_bootstrap, **{"linger.ms": 20}))
    job = start_embedded_job(s, "--startup-mode", "earliest-offset", "--idle-timeout", "5")
    try:
        produce(producer, raw, first)

        def closed_through(minute: int):
            return lambda ms: any(t == aligned_topic and d["window_start"] >= T0 + minute * MINUTE for t, d in ms)

        assert read_until(s.kafka_bootstrap, [aligned_topic], closed_through(35), timeout_s=120), f"job log:\n{job.tail()}"
        produce(producer, raw, late_resend + backlog + second)
        sent = first + late_resend + backlog + second
        behind = {(r["station_id"], r["event_time"]) for r in late_resend + backlog}
        # minutes whose windows the stream's end (minute 59, watermark 30 s behind) has closed
        closed = {(r["station_id"], r["event_time"] // MINUTE) for r in sent if r["event_time"] < T0 + 58 * MINUTE}

        on_time_windows = {(r["station_id"], r["event_time"] // MINUTE) for r in first + second} & closed

        def complete(ms) -> bool:
            windows = {(d["station_id"], d["window_start"] // MINUTE) for t, d in ms if t == aligned_topic}
            late = {(d["station_id"], d["event_time"]) for t, d in ms if t == late_topic}
            return on_time_windows <= windows and behind <= late

        messages = read_until(s.kafka_bootstrap, [aligned_topic, late_topic], complete, timeout_s=120)
        assert complete(messages), f"job alive {job.running()}; log:\n{job.tail()}"
    finally:
        job.stop()

    aligned = [d for t, d in messages if t == aligned_topic]
    late = [d for t, d in messages if t == late_topic]
    assert all(validation_errors("aggregate", d) == [] for d in aligned)
    assert all(validation_errors("late_reading", d) == [] and d["reason"] == "behind_watermark" and d["late_by_ms"] <= 0 for d in late)
    assert sorted((d["station_id"], d["event_time"]) for d in late) == sorted(behind)  # exactly these, each once

    # The reference: per station and minute, the distinct on-time readings and their copies.
    copies: dict[tuple[str, int], Counter] = defaultdict(Counter)
    values: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    corrected_ids: dict[tuple[str, int], set[str]] = defaultdict(set)  # a reading counts as corrected if any copy was
    for r in first + second:  # everything sent in order (within the out-of-orderness)
        key = (r["station_id"], r["event_time"] // MINUTE)
        if r["clock_corrected"]:
            corrected_ids[key].add(r["reading_id"])
        copies[key][r["reading_id"]] += 1
        values[key][r["reading_id"]] = r["value"]
    by_window = {(d["station_id"], d["window_start"] // MINUTE): d for d in aligned}
    assert len(by_window) == len(aligned), "one aggregate per station and minute"
    checked = 0
    for key in sorted(k for k in copies if k in closed):
        d = by_window[key]
        expected_mean = float(np.mean(list(values[key].values())))
        assert (d["count"], d["duplicates"]) == (len(copies[key]), sum(copies[key].values()) - len(copies[key])), key
        assert d["clock_corrected"] == len(corrected_ids[key]), key
        assert d["mean"] == pytest.approx(expected_mean, rel=1e-12), key
        checked += 1
    assert checked == 3 * 58 - 10  # 58 closed minutes of 3 stations, less the offline station's 10
    assert sum(by_window[(DUPED, T0 // MINUTE + m)]["duplicates"] for m in range(10, 20)) == 10 * 6 * 2
    assert not any((OFFLINE, T0 // MINUTE + m) in by_window for m in range(10, 20))  # the backlog was late: no revision yet
    assert all(by_window[(JUMBLED, T0 // MINUTE + m)]["clock_corrected"] == 6 for m in range(30, 58))

    # Accounting: every reading of a closed minute is a distinct reading, a duplicate, or late.
    sent_count = Counter((r["station_id"], r["event_time"] // MINUTE) for r in sent if (r["station_id"], r["event_time"] // MINUTE) in closed)
    got = Counter()
    for key, d in by_window.items():
        got[key] += d["count"] + d["duplicates"]
    for d in late:
        got[(d["station_id"], d["event_time"] // MINUTE)] += 1
    assert {k: got[k] for k in sent_count} == dict(sent_count)
