"""MQTT -> Kafka bridge: validate, normalise, key by station, dead-letter the rest.

At-least-once without loss: the bridge subscribes with a persistent MQTT
session and manual acknowledgement, and sends the PUBACK for a message only
after Kafka confirmed every record produced from it (readings, or its
dead-letter record). If the bridge crashes in between, the broker redelivers
the message to the next bridge; the idempotent producer and the readings'
stable ids make the repeat harmless downstream.

Clock skew is corrected per device on the way (connectors/clock_skew.py, settings from
config/clock.yaml); a change in a device's correction is published on jw.devices.health
as part of the message, so it is acknowledged only once that event is in Kafka too. The
estimates live in memory: a restarted bridge re-learns each device from its next messages.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter, Gauge, Histogram

from connectors.clock_skew import ClockConfig, ClockSkew, parse_clock_config
from connectors.kafka_io import DecodeError, decode_json, encode_json, ensure_topics, producer_config, read_latest
from connectors.mqtt_io import mqtt_client
from connectors.normalize import Rejected, normalize_message
from jointwatch.settings import Settings
from jointwatch.stack.secrets import BRIDGE_USER, Secrets
from schemas.errors import read_yaml
from schemas.models import ClockState, Reading, validation_errors
from schemas.network import Network
from schemas.topics import CLOCK_STATE, DEVICE_HEALTH, MQTT_UP_SUBSCRIPTION, READINGS_DEAD, READINGS_RAW, namespaced

log = logging.getLogger("jointwatch.bridge")

MESSAGES = Counter("jw_bridge_messages_total", "MQTT messages received")
READINGS = Counter("jw_bridge_readings_total", "readings produced to Kafka")
DEAD = Counter("jw_bridge_dead_lettered_total", "messages dead-lettered", ["reason"])
ACKED = Counter("jw_bridge_acked_total", "MQTT messages acknowledged after Kafka confirmed them")
FAILED = Counter("jw_bridge_delivery_failures_total", "Kafka deliveries that failed (message left unacknowledged)")
LATENCY = Histogram("jw_bridge_ack_seconds", "MQTT receipt -> Kafka confirmation", buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
# One series per device is fine at this network's scale (tens to a few thousand stations).
CLOCK_OFFSET = Gauge("jw_bridge_clock_offset_seconds", "clock offset subtracted from the device's time (0: not corrected)", ["station_id"])
CORRECTED = Counter("jw_bridge_clock_corrected_readings_total", "readings whose event time was clock-corrected")
HEALTH = Counter("jw_bridge_device_health_events_total", "device-health events published", ["kind"])
CLOCK_STATES = Counter("jw_bridge_clock_states_total", "device clock estimator states saved, restored at start, or ignored as invalid", ["outcome"])


def load_clock_config(path: str | Path) -> ClockConfig:
    """config/clock.yaml (setting clock_file), validated; ConfigError names the file and key."""
    return parse_clock_config(read_yaml(path), str(path))


@dataclass
class _Pending:
    mid: int
    qos: int
    remaining: int
    received: float = field(default_factory=time.monotonic)
    failed: bool = False


class MqttKafkaBridge:
    flush_timeout_s = 10.0  # on stop: how long to wait for Kafka to confirm what is in flight
    save_clocks_every_s = 5.0  # how often the clock estimators of devices heard from are saved (and at stop)

    def __init__(
        self, settings: Settings, network: Network, secrets: Secrets, client_id: str = "jw-bridge", kafka_bootstrap: str | None = None
    ) -> None:
        self.settings, self.network = settings, network
        self.raw_topic = namespaced(READINGS_RAW, settings.namespace)
        self.dead_topic = namespaced(READINGS_DEAD, settings.namespace)
        self.health_topic = namespaced(DEVICE_HEALTH, settings.namespace)
        self.clock_state_topic = namespaced(CLOCK_STATE, settings.namespace)
        self.clocks = ClockSkew(load_clock_config(settings.clock_file))
        self._clocks_saved = time.monotonic()
        self._offsets: dict[str, int] = {}  # last offset put on each device's gauge (set only on change)
        self.producer = Producer(producer_config(kafka_bootstrap or settings.kafka_bootstrap, **{"linger.ms": 20, "batch.num.messages": 10000}))
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._token = 0
        self.delivery_failed = threading.Event()
        # Persistent session (clean_session=False) + manual ack: unacknowledged QoS 1 messages survive our crash.
        self.client = mqtt_client(client_id, BRIDGE_USER, secrets.mqtt_password(BRIDGE_USER), clean_session=False, manual_ack=True)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected = threading.Event()

    # -- MQTT side (paho's network thread) -------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: mqtt.ReasonCode, props: object) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the bridge: %s", reason)
            return
        client.subscribe(MQTT_UP_SUBSCRIPTION, qos=1)
        self.connected.set()
        log.info("bridge connected to MQTT, subscribed to %s", MQTT_UP_SUBSCRIPTION)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        MESSAGES.inc()
        now_ms = int(time.time() * 1000)
        try:
            readings, health = normalize_message(msg.topic, msg.payload, self.network, now_ms, self.clocks)
            records = [(self.raw_topic, r["station_id"], encode_json(r)) for r in readings]
            self._clock_metrics(readings)
            if health is not None:
                records.append((self.health_topic, health["station_id"], encode_json(health)))
                HEALTH.labels(health["kind"]).inc()
                log.info("device health: %s %s: %s", health["station_id"], health["kind"], health["reason"])
        except Rejected as rej:
            DEAD.labels(rej.code).inc()
            log.warning("dead-lettered message on %s: %s", msg.topic, rej)
            records = [(self.dead_topic, msg.topic, encode_json(_dead_letter(msg, rej, now_ms)))]
        with self._lock:
            self._token += 1
            token = self._token
            self._pending[token] = _Pending(msg.mid, msg.qos, len(records))
        for topic, key, value in records:
            self._produce(topic, key, value, token)
        if records and records[0][0] == self.raw_topic:
            READINGS.inc(len(readings))
        if time.monotonic() - self._clocks_saved >= self.save_clocks_every_s:
            self._save_clocks()  # here, on paho's thread, the only one that touches the estimators while running

    # -- clock estimator state: saved to a compacted topic, restored at start ------------------
    def _restore_clocks(self) -> None:
        ensure_topics(self.settings.kafka_bootstrap, [CLOCK_STATE], self.settings.namespace)
        restored = 0
        for key, value in read_latest(self.settings.kafka_bootstrap, self.clock_state_topic, f"jw-bridge-restore-{uuid.uuid4().hex}").items():
            if value is None:
                continue
            try:
                doc = decode_json(value)
                errors = validation_errors("clock_state", doc)
                if errors:
                    raise DecodeError("; ".join(errors))
            except DecodeError as exc:
                CLOCK_STATES.labels("invalid").inc()
                log.error("ignored clock state of %r: %s", key, exc)
                continue
            if doc["station_id"] in self.network.stations:
                self.clocks.restore(doc["station_id"], doc["state"])
                restored += 1
        CLOCK_STATES.labels("restored").inc(restored)
        log.info("restored the clock estimators of %d devices from %s", restored, self.clock_state_topic)

    def _save_clocks(self) -> None:
        self._clocks_saved = time.monotonic()
        now_ms = int(time.time() * 1000)
        for sid in sorted(self.clocks.drain_changed()):
            state = self.clocks.state(sid)
            if state is None:
                continue
            doc: ClockState = {"schema": "jw.clock_state.v1", "station_id": sid, "saved_at": now_ms, "state": state}  # type: ignore[typeddict-item]
            while True:
                try:  # best effort: losing one save costs a relearn after a restart, never a reading
                    self.producer.produce(self.clock_state_topic, key=sid, value=encode_json(doc))
                    break
                except BufferError:
                    self.producer.poll(0.05)
            CLOCK_STATES.labels("saved").inc()

    def _clock_metrics(self, readings: list[Reading]) -> None:
        offset = readings[0]["clock_offset_ms"]  # a message's readings share one correction
        if offset:
            CORRECTED.inc(len(readings))
        sid = readings[0]["station_id"]
        if self._offsets.get(sid) != offset:
            self._offsets[sid] = offset
            CLOCK_OFFSET.labels(sid).set(offset / 1000)

    def _produce(self, topic: str, key: str, value: bytes, token: int) -> None:
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, on_delivery=lambda err, m, t=token: self._delivered(t, err, m))
                return
            except BufferError:  # local queue full: let deliveries drain, then retry (back-pressure on MQTT)
                self.producer.poll(0.05)

    # -- Kafka side (delivery callbacks, from producer.poll in run()) ----------------------
    def _delivered(self, token: int, err: KafkaError | None, msg: Message) -> None:
        with self._lock:
            p = self._pending.get(token)
            if p is None:
                return
            if err is not None:
                p.failed = True
            p.remaining -= 1
            done = p.remaining == 0
            if done:
                del self._pending[token]
        if err is not None:
            FAILED.inc()
            log.error("Kafka delivery failed (%s); MQTT message %d stays unacknowledged for redelivery", err, p.mid)
            self.delivery_failed.set()
        if done and not p.failed:
            self.client.ack(p.mid, p.qos)
            ACKED.inc()
            LATENCY.observe(time.monotonic() - p.received)

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set or a delivery fails for good (then exit: the broker redelivers)."""
        self._restore_clocks()
        self.client.connect("127.0.0.1", self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        try:
            while not stop.is_set() and not self.delivery_failed.is_set():
                self.producer.poll(0.05)
        finally:
            self.client.loop_stop()
            self._save_clocks()  # paho's thread has stopped: nothing else touches the estimators
            self.producer.flush(self.flush_timeout_s)
            self.client.disconnect()
        if self.delivery_failed.is_set():
            raise RuntimeError("a Kafka delivery failed; stopped without acknowledging it so the broker redelivers it")

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)


def _dead_letter(msg: mqtt.MQTTMessage, rej: Rejected, received_ms: int) -> dict:
    try:
        payload, encoding = msg.payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        payload, encoding = base64.b64encode(msg.payload).decode(), "base64"
    return {
        "schema": "jw.deadletter.v1",
        "reason": rej.code,
        "detail": rej.detail,
        "mqtt_topic": msg.topic,
        "received_at": received_ms,
        "payload_encoding": encoding,
        "payload": payload,
    }
