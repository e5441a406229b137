"""A demo responder (webhook receiver) and a region console (MQTT subscriber).

Both stand in for a monitoring centre in the demo and in integration tests:
the webhook server verifies signatures and drops duplicate deliveries exactly
as a real receiver should; the console subscribes with the region's own
credentials, so the broker's ACL is exercised too.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from alerts.signing import DEFAULT_TOLERANCE_S, DELIVERY_HEADER, SIGNATURE_HEADER, SignatureError, verify
from jointwatch.settings import Settings
from jointwatch.stack.secrets import Secrets, console_user
from connectors.mqtt_io import mqtt_client
from schemas.topics import MQTT_ALERTS

log = logging.getLogger(__name__)

T = TypeVar("T")
HOOK_PREFIX = "/hooks/"
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Received:
    responder_id: str
    delivery_id: str
    alert: dict[str, Any]  # the alert document; its "delivery" member says role and region
    received_at: float = field(default_factory=time.time)

    @property
    def role(self) -> str:
        return str(self.alert["delivery"]["role"])


class Inbox(Generic[T]):
    """A thread-safe list that tests can wait on."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._changed = threading.Condition()

    def append(self, item: T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def items(self) -> list[T]:
        with self._changed:
            return list(self._items)

    def wait_for(self, predicate: Callable[[list[T]], bool], timeout: float) -> list[T]:
        """Wait until predicate(items) holds; return the items, or raise TimeoutError with what arrived."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(list(self._items)), timeout):
                raise TimeoutError(f"condition not met within {timeout} s; received {len(self._items)}: {self._items!r}")
            return list(self._items)


def describe(name: str, alert: Mapping[str, Any]) -> str:
    """One line for a desk: '[north duty desk] RAISE YELLOW air/aqi n-a03 lead (origin north; assist central) a1b2'."""
    role = alert.get("delivery", {}).get("role", "?")
    assist = f"; assist {', '.join(alert['affected_regions'])}" if alert["affected_regions"] else ""
    return (
        f"[{name}] {alert['action'].upper()} {alert['tier'].upper()} {alert['kind']}/{alert['indicator']} {alert['subject']} {role} "
        f"(was {alert['previous_tier']}; origin {alert['origin_region']}{assist}) {alert['alert_id'][:12]}"
    )


class ResponderServer:
    """Serves POST /hooks/<responder-id> for every responder it has a key for."""

    def __init__(
        self,
        keys: Mapping[str, bytes],
        host: str = "127.0.0.1",
        port: int = 0,
        on_alert: Callable[[Received], None] | None = None,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
    ) -> None:
        self.keys, self.on_alert, self.tolerance_s = dict(keys), on_alert, tolerance_s
        self.received: Inbox[Received] = Inbox()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._attempts: dict[str, int] = {}
        self._fail: dict[str, tuple[int, int]] = {}  # responder id -> (failures left, status)
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="jw-responder", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, responder_id: str) -> str:
        return f"http://127.0.0.1:{self.port}{HOOK_PREFIX}{responder_id}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, responder_id: str, count: int, status: int = 503) -> None:
        """Answer the next `count` requests for a responder with `status` (fault injection)."""
        with self._lock:
            self._fail[responder_id] = (count, status)

    def attempts(self, responder_id: str) -> int:
        """Requests received for a responder, failed and duplicate ones included."""
        with self._lock:
            return self._attempts.get(responder_id, 0)

    def handle(self, path: str, signature: str | None, delivery: str | None, body: bytes) -> tuple[int, str]:
        """Answer one webhook request: (HTTP status, text)."""
        if not path.startswith(HOOK_PREFIX) or path[len(HOOK_PREFIX):] not in self.keys:
            return 404, f"no responder at {path}"
        responder_id = path[len(HOOK_PREFIX):]
        with self._lock:
            self._attempts[responder_id] = self._attempts.get(responder_id, 0) + 1
            left, status = self._fail.get(responder_id, (0, 0))
            if left:
                self._fail[responder_id] = (left - 1, status)
                return status, "injected failure"
        try:
            verify(body, signature, self.keys[responder_id], self.tolerance_s)
        except SignatureError as exc:
            log.warning("rejected request for %s: %s", responder_id, exc)
            return 401, str(exc)
        if not delivery:
            return 400, f"missing {DELIVERY_HEADER} header"
        try:
            alert = json.loads(body)
        except ValueError as exc:
            return 400, f"body is not JSON: {exc}"
        with self._lock:
            if delivery in self._seen:
                return 200, "duplicate delivery, already handled"
            self._seen.add(delivery)
        item = Received(responder_id, delivery, alert)
        self.received.append(item)
        if self.on_alert is not None:
            self.on_alert(item)
        return 200, "ok"


def _handler(server: ResponderServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                status, text = 413, "body too large"
            else:
                body = self.rfile.read(length)
                status, text = server.handle(self.path, self.headers.get(SIGNATURE_HEADER), self.headers.get(DELIVERY_HEADER), body)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("responder: " + format, *args)

    return Handler


class ConsoleSubscriber:
    """A region's monitoring-centre feed: subscribes to its alert topic as console_user(region)."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        password: str,
        topic: str,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.topic, self.on_alert = topic, on_alert
        self.messages: Inbox[dict[str, Any]] = Inbox()
        self._subscribed = threading.Event()
        self._error = ""
        self._client = mqtt_client(f"{username}-{uuid.uuid4().hex[:8]}", username, password, v5=True)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._timeout_s = timeout_s
        self._host, self._port = host, port

    @classmethod
    def for_region(
        cls,
        settings: Settings,
        secrets: Secrets,
        region: str,
        topic: str | None = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
    ) -> ConsoleSubscriber:
        """The console of `region` on the local stack (topic default: jw/v1/alerts/{region})."""
        user = console_user(region)
        topic = topic or MQTT_ALERTS.format(region=region)
        return cls("127.0.0.1", settings.mqtt_port, user, secrets.mqtt_password(user), topic, on_alert)

    def start(self) -> Self:
        """Connect and subscribe; return once the broker granted the subscription."""
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        if not self._subscribed.wait(self._timeout_s) or self._error:
            self.stop()
            raise RuntimeError(f"could not subscribe to {self.topic}: {self._error or 'timed out'}")
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if reason.is_failure:
            self._error = f"connect refused: {reason}"
            self._subscribed.set()
        else:
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode], props: Any) -> None:
        if any(r.is_failure for r in reasons):
            self._error = f"subscription refused: {[str(r) for r in reasons]}"
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            alert = json.loads(message.payload)
        except ValueError:
            log.warning("console %s: non-JSON message on %s", self.topic, message.topic)
            return
        self.messages.append(alert)
        if self.on_alert is not None:
            self.on_alert(alert)
