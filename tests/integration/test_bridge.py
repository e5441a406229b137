"""The MQTT -> Kafka bridge on the real stack: auth, ACL, dead letters, ack-after-Kafka, clock-skew correction."""

from __future__ import annotations

import gc
import json
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from confluent_kafka import Consumer

from connectors.clock_skew import ClockSkew
from connectors.mqtt_bridge import MqttKafkaBridge, load_clock_config
from connectors.normalize import parse_device_time
from schemas.models import validation_errors
from schemas.topics import DEVICE_HEALTH, MQTT_UP, READINGS_DEAD, READINGS_RAW, namespaced
from tests.integration.kafka_read import read_n, read_until
from tests.integration.mqtt_devices import connect, publish

pytestmark = pytest.mark.integration


def start_bridge(settings, network, secrets, client_id: str, **kw) -> tuple[MqttKafkaBridge, threading.Event, threading.Thread]:
    bridge = MqttKafkaBridge(settings, network, secrets, client_id=client_id, **kw)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    thread.start()
    assert bridge.connected.wait(15), "bridge did not connect to MQTT"
    return bridge, stop, thread


def payload(station: str, minute: int, **values: float) -> bytes:
    return json.dumps({"station_id": station, "seq": minute, "ts": f"2026-11-22T10:{minute:02d}:00Z", "values": values or {"pm25": 30.0 + minute}}).encode()


def test_wrong_password_is_refused(stack) -> None:
    client, rc = connect(stack.settings, "n-a01", "not-the-password")
    client.loop_stop()
    assert rc.is_failure and "authori" in str(rc).lower()


def test_bridge_normalises_dead_letters_and_respects_acl(stack) -> None:
    s = stack.isolated()
    net = stack.network
    air = sorted(sid for sid, st in net.stations.items() if st.medium == "air")
    me, other, unregistered = air[0], air[1], air[2]
    region = net.stations[me].region
    # The bridge's registry lacks one station that the broker still lets in: defence in depth.
    bridge_net = replace(net, stations={k: v for k, v in net.stations.items() if k != unregistered})
    bridge, stop, thread = start_bridge(s, bridge_net, stack.secrets, f"bridge-{uuid.uuid4().hex[:8]}")
    try:
        dev, rc = connect(s, me, stack.secrets.mqtt_password(me))
        assert not rc.is_failure
        my_topic = MQTT_UP.format(region=region, station_id=me)
        publish(dev, my_topic, payload(me, 1, pm25=12.5, pm10=30.0))
        publish(dev, my_topic, b"{oops")
        publish(dev, my_topic, json.dumps({"station_id": me, "ts": "2026-11-22T10:02:00Z", "values": {"pm25": "high"}}).encode())
        publish(dev, my_topic, payload(me, 3, pm25=99999.0))
        publish(dev, my_topic, payload(other, 4))  # a payload claiming another station, on my topic
        publish(dev, my_topic, b"{" + b" " * 9000 + b"}")
        # Publishing on another station's topic: the broker's ACL drops it, the bridge never sees it.
        publish(dev, MQTT_UP.format(region=net.stations[other].region, station_id=other), payload(other, 5))
        ghost, _ = connect(s, unregistered, stack.secrets.mqtt_password(unregistered))
        publish(ghost, MQTT_UP.format(region=net.stations[unregistered].region, station_id=unregistered), payload(unregistered, 6))
        publish(dev, my_topic, payload(me, 7, pm25=40.0))  # still running after all that
        for c in (dev, ghost):
            c.loop_stop()
            c.disconnect()

        raw, dead = namespaced(READINGS_RAW, s.namespace), namespaced(READINGS_DEAD, s.namespace)
        got = read_n(s.kafka_bootstrap, [raw, dead], n=9)
        readings = [doc for t, doc in got if t == raw]
        dead_letters = [doc for t, doc in got if t == dead]
        assert sorted((r["parameter"], r["value"]) for r in readings) == [("pm10", 30.0), ("pm25", 12.5), ("pm25", 40.0)]
        assert all(validation_errors("reading", r) == [] for r in readings)
        assert sorted(d["reason"] for d in dead_letters) == sorted(
            ["malformed_json", "schema_violation", "out_of_range", "station_mismatch", "oversized", "unknown_station"]
        )
        assert all(d["mqtt_topic"].endswith("/up") and d["payload"] for d in dead_letters)
        oos = next(d for d in dead_letters if d["reason"] == "out_of_range")
        assert "99999" in oos["detail"] and json.loads(oos["payload"])["values"]["pm25"] == 99999.0
        assert bridge.pending() == 0
    finally:
        stop.set()
        thread.join(20)


def test_unconfirmed_messages_are_redelivered_after_a_crash(stack) -> None:
    """A bridge whose Kafka never confirms acks nothing; its successor gets every message."""
    s = stack.isolated()
    client_id = f"bridge-{uuid.uuid4().hex[:8]}"
    me = sorted(stack.network.stations)[0]
    topic = MQTT_UP.format(region=stack.network.stations[me].region, station_id=me)
    values = {p: 1.0 for p in stack.network.stations[me].parameters if p not in ("wind_dir", "temp")}

    broken, stop, thread = start_bridge(s, stack.network, stack.secrets, client_id, kafka_bootstrap="127.0.0.1:9")
    broken.flush_timeout_s = 0.5
    dev, _ = connect(s, me, stack.secrets.mqtt_password(me))
    for minute in range(5):
        publish(dev, topic, payload(me, minute, **values))
    assert read_until(s.kafka_bootstrap, [namespaced(READINGS_RAW, s.namespace)], lambda m: False, timeout_s=2) == []
    assert broken.pending() == 5
    stop.set()
    thread.join(20)
    del broken, thread  # its producer (and its retries against the dead address) go with it
    gc.collect()

    successor, stop2, thread2 = start_bridge(s, stack.network, stack.secrets, client_id)
    try:
        got = read_n(s.kafka_bootstrap, [namespaced(READINGS_RAW, s.namespace)], n=5 * len(values))
        assert len(got) == 5 * len(values)
        assert {doc["seq"] for _, doc in got} == set(range(5))
    finally:
        dev.loop_stop()
        stop2.set()
        thread2.join(20)


MINUTE, HOUR = 60_000, 3_600_000
T0 = int(datetime(2026, 11, 22, tzinfo=UTC).timestamp() * 1000)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def keyed(bootstrap: str, topic: str, n: int, timeout_s: float = 60.0, settle_s: float = 3.0) -> list[tuple[str, dict]]:
    """(key, decoded JSON) of a topic's messages: at least n, plus any arriving within `settle_s` after."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-keyed-{uuid.uuid4().hex}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            out += [(m.key().decode(), json.loads(m.value())) for m in consumer.consume(1000, timeout=0.5) if not m.error()]
            if len(out) >= n:
                deadline = min(deadline, time.monotonic() + settle_s)
    finally:
        consumer.close()
    return out


def test_skewed_and_drifting_clocks_are_corrected_and_flagged(stack) -> None:
    """Six hours of one-a-minute readings (times from gw_ts, so they are published as fast as MQTT goes):
    a logger 8 h fast (UTC+8 wall time sent as UTC) that is NTP-fixed after 5 h, a clock drifting 6 min
    a day from 30 s fast, and two good clocks (ISO UTC; zone-less local time) that must be left alone."""
    s = stack.isolated()
    net = stack.network
    fast, drifting, good, local = sorted(sid for sid, st in net.stations.items() if st.medium == "air")[:4]
    steps, fix_at = 360, 300
    drift = {i: 30_000 + i * 250 for i in range(steps)}  # 6 min/day = 250 ms a minute
    bridge, stop, thread = start_bridge(s, net, stack.secrets, f"bridge-{uuid.uuid4().hex[:8]}")
    try:
        devices = {sid: connect(s, sid, stack.secrets.mqtt_password(sid))[0] for sid in (fast, drifting, good, local)}
        zone = ZoneInfo(net.stations[local].timezone)
        for i in range(steps):
            true = T0 + i * MINUTE
            gw = _iso(true + 300 + (i * 7919) % 2000)  # 0.3 .. 2.3 s device -> gateway, deterministic
            stamps = {
                fast: _iso(true + (8 * HOUR if i < fix_at else 0)),
                drifting: _iso(true + drift[i]),
                good: _iso(true),
                local: datetime.fromtimestamp(true / 1000, zone).strftime("%Y-%m-%d %H:%M:%S"),
            }
            for sid, ts in stamps.items():
                doc = {"station_id": sid, "seq": i, "ts": ts, "gw_ts": gw, "values": {"pm25": 20.0 + i % 7}}
                publish(devices[sid], MQTT_UP.format(region=net.stations[sid].region, station_id=sid), json.dumps(doc).encode())
        for c in devices.values():
            c.loop_stop()
            c.disconnect()

        raw = namespaced(READINGS_RAW, s.namespace)
        readings = [doc for _, doc in read_n(s.kafka_bootstrap, [raw], n=4 * steps, timeout_s=120)]
        assert len(readings) == 4 * steps and all(validation_errors("reading", r) == [] for r in readings)
        by = {sid: sorted((r for r in readings if r["station_id"] == sid), key=lambda r: r["seq"]) for sid in stamps}

        # Good clocks: untouched, whatever their timestamp form.
        for sid in (good, local):
            assert all((r["event_time"], r["clock_corrected"], r["clock_offset_ms"]) == (T0 + r["seq"] * MINUTE, False, 0) for r in by[sid])
        # The fast logger: never placed after its gateway time; corrected to within the transport delay
        # before and after the NTP fix, except the two readings before the fix is confirmed (they look like
        # delayed copies, so they keep the old offset, flagged with it); device time kept as sent.
        for r in by[fast]:
            i, true = r["seq"], T0 + r["seq"] * MINUTE
            assert r["event_time"] <= r["received_at"] + 15_000 and r["reading_id"] == f"{fast}/pm25/{true + (8 * HOUR if i < fix_at else 0)}"
            if i < fix_at:
                assert r["clock_corrected"] and abs(r["event_time"] - true) <= 3_000 and r["device_time"] == _iso(true + 8 * HOUR)
            elif i in (fix_at, fix_at + 1):
                assert r["clock_offset_ms"] > 7 * HOUR
            else:
                assert (r["event_time"], r["clock_corrected"], r["clock_offset_ms"]) == (true, False, 0)
        # The drifting clock: corrected from the 5th reading on and followed as it drifts. The bridge applied
        # exactly the estimator to what it received: replaying its readings, in the order they reached Kafka
        # (one partition per station), through a fresh estimator gives the same times, offsets and events.
        # (How close the correction tracks the drift is tested, deterministically, in tests/unit/test_clock_skew.py:
        # here a loaded machine may deliver the devices' messages differently.)
        replay = ClockSkew(load_clock_config(s.clock_file))
        replayed_kinds = []
        for r in (r for r in readings if r["station_id"] == drifting):
            device_ms, _ = parse_device_time(r["device_time"], net.stations[drifting].timezone)
            event, offset, event_doc = replay.observe(drifting, r["region"], device_ms, r["received_at"], "gateway")
            assert (r["event_time"], r["clock_offset_ms"], r["clock_corrected"]) == (event, offset, offset != 0), r
            replayed_kinds += [event_doc["kind"]] if event_doc else []
        assert all(r["clock_corrected"] for r in by[drifting][4:])
        offsets = [r["clock_offset_ms"] for r in by[drifting][4:]]
        assert offsets[-1] - offsets[0] > 60_000  # 90 s of drift in 6 h, followed

        # Health events, keyed by station, valid, in order per device; none for the good clocks.
        health = keyed(s.kafka_bootstrap, namespaced(DEVICE_HEALTH, s.namespace), n=8)
        assert all(k == e["station_id"] and validation_errors("device_health", e) == [] for k, e in health)
        kinds = {sid: [e["kind"] for _, e in health if e["station_id"] == sid] for sid in stamps}
        assert kinds[good] == kinds[local] == []
        assert kinds[fast] == ["clock_skew", "clock_jump"]
        skew, jump = (e for _, e in health if e["station_id"] == fast)
        assert skew["corrected"] and abs(skew["offset_ms"] - 8 * HOUR) < 3_000 and skew["reference_time"] == T0 + 4 * MINUTE + 300 + (4 * 7919) % 2000
        assert not jump["corrected"] and jump["applied_offset_ms"] == 0 and jump["previous_applied_offset_ms"] > 7 * HOUR and jump["reference"] == "gateway"
        # Drift: correction starts, then one event each time it moved by more than the tolerance (15 s)
        # since the last (90 s in 6 h: about 6), exactly as the replay says.
        assert kinds[drifting] == replayed_kinds and set(replayed_kinds) == {"clock_skew"} and len(replayed_kinds) >= 4
        assert bridge.pending() == 0
    finally:
        stop.set()
        thread.join(20)


def test_a_restarted_bridge_goes_on_correcting_a_slow_clock_from_its_first_message(stack) -> None:
    """The estimators are saved to jw.devices.clock-state and restored by the next bridge: a clock 9 min
    slow (which nothing else can bound) is corrected from its first message after the restart."""
    s = stack.isolated()
    net = stack.network
    sid = sorted(sid for sid, st in net.stations.items() if st.medium == "air")[5]
    topic = MQTT_UP.format(region=net.stations[sid].region, station_id=sid)
    raw = namespaced(READINGS_RAW, s.namespace)

    def send(i: int) -> None:
        true = T0 + i * MINUTE
        doc = {"station_id": sid, "seq": i, "ts": _iso(true - 9 * MINUTE), "gw_ts": _iso(true + 800), "values": {"pm25": 20.0}}
        dev, _ = connect(s, sid, stack.secrets.mqtt_password(sid))
        publish(dev, topic, json.dumps(doc).encode())
        dev.loop_stop()
        dev.disconnect()

    for seqs in (range(8), range(8, 9)):
        bridge, stop, thread = start_bridge(s, net, stack.secrets, f"bridge-{uuid.uuid4().hex[:8]}")
        try:
            for i in seqs:
                send(i)
            assert read_until(s.kafka_bootstrap, [raw], lambda ms: len(ms) >= seqs[-1] + 1, timeout_s=30)
        finally:
            stop.set()
            thread.join(20)
        assert not thread.is_alive()
    readings = sorted((d for _, d in read_n(s.kafka_bootstrap, [raw], n=9)), key=lambda r: r["seq"])
    assert [r["clock_corrected"] for r in readings] == [False] * 4 + [True] * 5  # learnt from the 5th, then kept across the restart
    # sample offset: (true - 9 min) - (true + 0.8 s) = -540.8 s, applied in whole seconds (half up): -541 s
    assert (readings[8]["clock_offset_ms"], readings[8]["event_time"]) == (-541_000, T0 + 8 * MINUTE + 1000)
