"""Publishing as a device in integration tests: real MQTT, real credentials."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt

from connectors.mqtt_io import mqtt_client
from jointwatch.settings import Settings


def connect(settings: Settings, user: str, password: str, client_id: str | None = None) -> tuple[mqtt.Client, mqtt.ReasonCode]:
    """Connect and wait for CONNACK; returns the client and the broker's reason code."""
    client = mqtt_client(client_id or f"test-{user}", user, password)
    answered = threading.Event()
    result: list[mqtt.ReasonCode] = []
    client.on_connect = lambda c, u, f, rc, p: (result.append(rc), answered.set())
    client.connect("127.0.0.1", settings.mqtt_port, keepalive=10)
    client.loop_start()
    if not answered.wait(10):
        raise TimeoutError("no CONNACK from the broker")
    return client, result[0]


def publish(client: mqtt.Client, topic: str, payload: bytes) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    assert info.is_published(), f"no PUBACK for {topic}"
