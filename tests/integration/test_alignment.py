"""Adversarial alignment on the real job: duplicated bursts after a reconnect (one copy
corrected by a slightly different clock offset), out-of-order delivery within the allowed
out-of-orderness, a clock-corrected device, late readings within the allowed lateness (they
revise their minutes: a new reading, a re-sent copy, a conflicting copy, a short backlog),
readings beyond it, and a station offline for a while that then replays its backlog.
Readings go straight to Kafka (exact times and values); what the job publishes is compared
with a numpy reference of every reading that was not beyond the allowed lateness, and every
reading is accounted for: distinct + duplicates in each minute's latest version + late = input.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from confluent_kafka import Producer

from connectors.kafka_io import producer_config
from connectors.normalize import normalize
from jointwatch.stack.flink import start_embedded_job
from schemas.models import validation_errors
from schemas.network import load_network
from schemas.topics import READINGS_ALIGNED, READINGS_LATE, READINGS_RAW, READINGS_REVISIONS, namespaced
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
                if station == OFFLINE and (10 <= m < 20 or 32 <= m < 35):
                    continue  # offline: its backlogs come later
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


def test_duplicates_disorder_lateness_revisions_and_backlog_are_all_accounted_for(stack) -> None:
    s = stack.isolated()
    rng = random.Random(5)
    raw = namespaced(READINGS_RAW, s.namespace)
    aligned_topic, late_topic = namespaced(READINGS_ALIGNED, s.namespace), namespaced(READINGS_LATE, s.namespace)
    revisions_topic = namespaced(READINGS_REVISIONS, s.namespace)
    first, second = stream(range(0, 40), rng), stream(range(40, 60), rng)
    # Sent after the job has closed minute 35 (watermark 35:59.999 .. 39:20 while they are read, since
    # each partition's watermark trails its newest reading, <= 39:50, by 30 s): minutes 5 and 10-19
    # closed more than the allowed 10 minutes ago, so late; minutes 32-34 less, so they are revised.
    late_resend = [reading(DUPED, T0 + 5 * MINUTE, 99.0)]
    backlog = [reading(OFFLINE, T0 + m * MINUTE + k * 10_000, 30.0 + m + k) for m in range(10, 20) for k in range(6)]
    short_backlog = [reading(OFFLINE, T0 + m * MINUTE + k * 10_000, 40.0 + m + k) for m in range(32, 35) for k in range(6)]
    on_time_33 = next(r for r in first if r["station_id"] == DUPED and r["event_time"] == T0 + 33 * MINUTE)
    on_time_34 = next(r for r in first if r["station_id"] == JUMBLED and r["event_time"] == T0 + 34 * MINUTE + 20_000)
    revising = [
        reading(DUPED, T0 + 33 * MINUTE + 5_000, 77.0),  # a reading the device sent late: one more distinct reading
        dict(on_time_33),  # a copy re-sent late: a duplicate, the mean stays
        {**on_time_34, "value": on_time_34["value"] - 5.0},  # a conflicting copy: the smaller value counts, as on time
        *short_backlog,
    ]
    producer = Producer(producer_config(s.kafka_bootstrap, **{"linger.ms": 20}))
    job = start_embedded_job(s, "--startup-mode", "earliest-offset", "--idle-timeout", "5", "--allowed-lateness", "10")
    try:
        produce(producer, raw, first)

        def closed_through(minute: int):
            return lambda ms: any(t == aligned_topic and d["window_start"] >= T0 + minute * MINUTE for t, d in ms)

        assert read_until(s.kafka_bootstrap, [aligned_topic], closed_through(35), timeout_s=120), f"job log:\n{job.tail()}"
        produce(producer, raw, late_resend + backlog + revising + second)
        sent = first + late_resend + backlog + revising + second
        beyond = late_resend + backlog
        behind = {(r["station_id"], r["event_time"]) for r in beyond}
        # minutes whose windows the stream's end (minute 59, watermark 30 s behind) has closed
        closed = {(r["station_id"], r["event_time"] // MINUTE) for r in sent if r["event_time"] < T0 + 58 * MINUTE}
        on_time_windows = {(r["station_id"], r["event_time"] // MINUTE) for r in first + second} & closed
        revised = {(DUPED, T0 // MINUTE + 33): 3, (JUMBLED, T0 // MINUTE + 34): 2} | {(OFFLINE, T0 // MINUTE + m): 7 for m in range(32, 35)}
        revised_counts = {(DUPED, T0 // MINUTE + 33): 7, (JUMBLED, T0 // MINUTE + 34): 6} | {(OFFLINE, T0 // MINUTE + m): 6 for m in range(32, 35)}

        def complete(ms) -> bool:
            windows = {(d["station_id"], d["window_start"] // MINUTE) for t, d in ms if t == aligned_topic}
            late = {(d["station_id"], d["event_time"]) for t, d in ms if t == late_topic}
            # the last revision per key is current: its version, and its content (a revision can be
            # published first without the minute's on-time readings, then complete, with one version)
            last = {(d["station_id"], d["window_start"] // MINUTE): (d["version"], d["count"]) for t, d in ms if t == revisions_topic and d}
            return on_time_windows <= windows and behind <= late and all(last.get(k) == (v, revised_counts[k]) for k, v in revised.items())

        messages = read_until(s.kafka_bootstrap, [aligned_topic, late_topic, revisions_topic], complete, timeout_s=120)
        assert complete(messages), f"job alive {job.running()}; log:\n{job.tail()}"
    finally:
        job.stop()

    aligned = [d for t, d in messages if t == aligned_topic]
    late = [d for t, d in messages if t == late_topic]
    revisions = [d for t, d in messages if t == revisions_topic and d is not None]  # tombstones: a revision's transient retraction
    assert all(validation_errors("aggregate", d) == [] for d in aligned + revisions)
    assert all(d["version"] == 1 for d in aligned) and all(d["version"] >= 2 for d in revisions)
    assert all(validation_errors("late_reading", d) == [] and d["reason"] == "beyond_allowed_lateness" and d["late_by_ms"] < 0
               and d["allowed_lateness_ms"] == 600_000 for d in late)
    assert sorted((d["station_id"], d["event_time"]) for d in late) == sorted(behind)  # exactly these, each once

    # What stores hold: per station and minute, the last record (first results come before revisions).
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for d in aligned + revisions:
        key = (d["station_id"], d["window_start"] // MINUTE)
        assert key not in latest or d["version"] >= latest[key]["version"], "versions never decrease along a key"
        latest[key] = d
    assert {k: latest[k]["version"] for k in revised} == revised
    assert {k for k, d in latest.items() if d["version"] > 1} == set(revised)

    # The reference: per station and minute, every reading not beyond the allowed lateness, as if on time:
    # distinct readings (the smallest value of conflicting copies) and their copies.
    counted = first + second + revising
    copies: dict[tuple[str, int], Counter] = defaultdict(Counter)
    values: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    corrected_ids: dict[tuple[str, int], set[str]] = defaultdict(set)  # a reading counts as corrected if any copy was
    for r in counted:
        key = (r["station_id"], r["event_time"] // MINUTE)
        if r["clock_corrected"]:
            corrected_ids[key].add(r["reading_id"])
        copies[key][r["reading_id"]] += 1
        values[key][r["reading_id"]] = min(r["value"], values[key].get(r["reading_id"], float("inf")))
    checked = 0
    for key in sorted(k for k in copies if k in closed):
        d = latest[key]
        assert (d["count"], d["duplicates"]) == (len(copies[key]), sum(copies[key].values()) - len(copies[key])), key
        assert d["clock_corrected"] == len(corrected_ids[key]), key
        assert d["mean"] == pytest.approx(float(np.mean(list(values[key].values()))), rel=1e-12), key
        assert (d["expected"], d["completeness"]) == (1.0, 1.0), key  # config/network.yaml: every 60 s; these report every 10 s
        checked += 1
    assert checked == 3 * 58 - 10  # 58 closed minutes of 3 stations, less the offline station's first backlog
    assert sum(latest[(DUPED, T0 // MINUTE + m)]["duplicates"] for m in range(10, 20)) == 10 * 6 * 2
    assert not any((OFFLINE, T0 // MINUTE + m) in latest for m in range(10, 20))  # that backlog was beyond the allowed lateness
    assert all(latest[(JUMBLED, T0 // MINUTE + m)]["clock_corrected"] == 6 for m in range(30, 58))
    assert latest[(DUPED, T0 // MINUTE + 33)]["count"] == 7 and latest[(DUPED, T0 // MINUTE + 33)]["duplicates"] == 1

    # Accounting: every reading of a closed minute is a distinct reading or a duplicate in its minute's latest version, or late.
    sent_count = Counter((r["station_id"], r["event_time"] // MINUTE) for r in sent if (r["station_id"], r["event_time"] // MINUTE) in closed)
    got = Counter()
    for key, d in latest.items():
        got[key] += d["count"] + d["duplicates"]
    for d in late:
        got[(d["station_id"], d["event_time"] // MINUTE)] += 1
    assert {k: got[k] for k in sent_count} == dict(sent_count)


def test_local_time_device_through_the_autumn_dst_change(stack) -> None:
    """A logger stamping Europe/Prague local time without a zone reports every 20 s through
    2026-10-25 03:00 CEST -> 02:00 CET: its local hour 02:00-02:59 happens twice. The bridge's
    normalisation (the real code, with the receive time as reference) and the job must give
    every UTC minute once, with all three readings and the value of that minute."""
    s = stack.isolated()
    net = load_network(s.network_file)
    sid = "n-a04"
    zone = ZoneInfo(net.stations[sid].timezone)
    start = int(datetime(2026, 10, 25, 0, 0, tzinfo=timezone.utc).timestamp() * 1000)  # 02:00 CEST
    minutes = 160  # to 02:40 UTC = 03:40 CET
    docs = []
    for m in range(minutes):
        for k in range(3):
            t = start + m * MINUTE + k * 20_000
            payload = {"station_id": sid, "ts": datetime.fromtimestamp(t / 1000, zone).strftime("%Y-%m-%d %H:%M:%S"), "values": {"pm25": float(m)}}
            docs += normalize(f"jw/v1/north/{sid}/up", json.dumps(payload).encode(), net, t + 2_000)
    assert len({d["device_time"] for d in docs}) == len(docs) - 60 * 3  # the repeated local hour
    producer = Producer(producer_config(s.kafka_bootstrap, **{"linger.ms": 20}))
    produce(producer, namespaced(READINGS_RAW, s.namespace), docs)
    aligned_topic = namespaced(READINGS_ALIGNED, s.namespace)
    closed = range(minutes - 1)  # the last minute stays open (the watermark trails by 30 s)
    job = start_embedded_job(s, "--startup-mode", "earliest-offset", "--idle-timeout", "5")
    try:
        messages = read_until(s.kafka_bootstrap, [aligned_topic], lambda ms: len(ms) >= len(closed), timeout_s=120)
    finally:
        job.stop()
    got = {(d["window_start"] - start) // MINUTE: d for _, d in messages}
    assert sorted(got) == list(closed), f"job log:\n{job.tail()}"
    for m, d in got.items():
        assert (d["count"], d["duplicates"], d["mean"], d["version"]) == (3, 0, float(m), 1), m
