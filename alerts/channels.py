"""Dispatch channels: a region's MQTT console feed, and signed webhooks to responders.

Each channel's `send` returns when the receiver has acknowledged the alert
(MQTT PUBACK, HTTP 2xx) and raises DeliveryError otherwise, saying whether a
retry can help.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
import requests
from paho.mqtt.reasoncodes import ReasonCode

from alerts.routing import Delivery, Routing
from alerts.signing import delivery_id, signed_headers
from connectors.kafka_io import encode_json
from connectors.mqtt_io import mqtt_client
from schemas.models import Alert

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    def __init__(self, reason: str, retryable: bool) -> None:
        super().__init__(reason)
        self.reason, self.retryable = reason, retryable


def delivery_key(alert: Alert, delivery: Delivery) -> str:
    """Stable id of one delivery; MQTT feeds use the region as their responder id."""
    return delivery_id(alert["alert_id"], delivery.responder_id or f"mqtt:{delivery.region}", delivery.role)


def payload(alert: Alert, delivery: Delivery) -> bytes:
    """The alert as sent: the alert document plus who it is for and in which role."""
    return encode_json({**alert, "delivery": {"id": delivery_key(alert, delivery), "role": delivery.role, "region": delivery.region}})


class MqttChannel:
    """Publishes with QoS 1 and waits for the broker's PUBACK (MQTT 5, so ACL denials show)."""

    def __init__(self, host: str, port: int, username: str, password: str, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._acks: dict[int, ReasonCode] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._last_connect_error = "not connected yet"
        # A unique client id: two routers must not take each other's session over.
        self._client = mqtt_client(f"{username}-{uuid.uuid4().hex[:8]}", username, password, v5=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.connect_async(host, port)
        self._client.loop_start()  # reconnects by itself after a broker restart

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self._last_connect_error = f"MQTT connect refused: {reason}"
            log.error("%s", self._last_connect_error)
        else:
            self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self._connected.clear()
        self._last_connect_error = f"MQTT disconnected: {reason}"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode, props: Any) -> None:
        with self._lock:
            self._acks[mid] = reason

    def send(self, alert: Alert, delivery: Delivery) -> None:
        if not self._connected.wait(self.timeout_s):
            raise DeliveryError(self._last_connect_error, retryable=True)
        info = self._client.publish(delivery.target, payload(alert, delivery), qos=1, retain=False)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryError(f"MQTT publish to {delivery.target} failed: {exc}", retryable=True) from None
        if not info.is_published():
            raise DeliveryError(f"no PUBACK for {delivery.target} within {self.timeout_s} s", retryable=True)
        with self._lock:
            reason = self._acks.pop(info.mid, None)
        if reason is not None and reason.is_failure:
            # e.g. "Not authorized": the ACL will not change by retrying.
            raise DeliveryError(f"broker refused publish to {delivery.target}: {reason}", retryable=False)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class WebhookChannel:
    """POSTs the signed alert; 2xx delivered, 408/429/5xx/network retryable, other statuses permanent."""

    def __init__(self, routing: Routing, keys: dict[str, bytes], timeout_s: float = 5.0) -> None:
        missing = [r.id for r in routing.responders() if r.id not in keys]
        if missing:
            raise KeyError(f"no signing key for responders {missing}")
        self.keys, self.timeout_s = keys, timeout_s

    def send(self, alert: Alert, delivery: Delivery) -> None:
        if delivery.responder_id is None:
            raise ValueError(f"webhook delivery without a responder id: {delivery}")
        body = payload(alert, delivery)
        headers = signed_headers(body, self.keys[delivery.responder_id], delivery_key(alert, delivery))
        try:
            response = requests.post(delivery.target, data=body, headers=headers, timeout=self.timeout_s, allow_redirects=False)
        except requests.Timeout:
            raise DeliveryError(f"POST {delivery.target}: no answer within {self.timeout_s} s", retryable=True) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"POST {delivery.target}: {type(exc).__name__}: {exc}", retryable=True) from None
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"POST {delivery.target}: HTTP {status} {response.text[:200].strip()!r}"
        raise DeliveryError(detail, retryable=status >= 500 or status in (408, 429))

    def close(self) -> None:
        """Nothing to release: every POST opens its own connection (alerts are rare)."""


def responder_keys(routing: Routing, key_for_ref: Callable[[str], bytes]) -> dict[str, bytes]:
    """Responder id -> signing key, looked up by each responder's secret_ref (e.g. Secrets.webhook_key)."""
    return {r.id: key_for_ref(r.secret_ref) for r in routing.responders()}
