"""The MQTT -> Kafka bridge on the real stack: auth, ACL, dead letters, ack-after-Kafka."""

from __future__ import annotations

import gc
import json
import threading
import uuid
from dataclasses import replace

import pytest

from connectors.mqtt_bridge import MqttKafkaBridge
from schemas.models import validation_errors
from schemas.topics import MQTT_UP, READINGS_DEAD, READINGS_RAW, namespaced
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
