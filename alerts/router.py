"""The alert router: jw.alerts -> every region's MQTT feed and webhook responders.

At-least-once: an alert's offset is committed only after each of its
deliveries was acknowledged, or was dead-lettered to jw.alerts.undeliverable
(flushed) after its retries ran out. A crash in between re-sends the alert;
receivers drop the duplicates by delivery id.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import Counter, Histogram

from alerts.channels import DeliveryError, MqttChannel, WebhookChannel, responder_keys
from alerts.routing import Delivery, Routing, plan_deliveries, unrouted_regions
from connectors.kafka_io import DecodeError, consumer_config, decode_json, encode_json, ensure_topics, position, producer_config, where
from jointwatch.settings import Settings
from jointwatch.stack.secrets import ROUTER_USER, Secrets
from schemas.models import Alert, validation_errors
from schemas.topics import ALERTS, ALERTS_UNDELIVERABLE, namespaced

log = logging.getLogger(__name__)

DEFAULT_GROUP_ID = "jw-alert-router"
UNDELIVERABLE_SCHEMA = "jw.undeliverable.v1"

ALERTS_CONSUMED = Counter("jw_router_alerts_consumed", "Alert messages read from Kafka")
INVALID_ALERTS = Counter("jw_router_invalid_alerts", "Alert messages that were not JSON or broke the alert schema")
DELIVERIES = Counter(
    "jw_router_deliveries",
    "Delivery attempts: delivered (acknowledged), retried (failed, will retry), failed (gave up)",
    ["channel", "role", "outcome"],
)
DEAD_LETTERED = Counter("jw_router_dead_lettered", "Documents written to the undeliverable topic", ["stage"])
DELIVERY_LATENCY = Histogram(
    "jw_router_delivery_latency_seconds",
    "From the first attempt of a delivery to its acknowledgement, retries included",
    ["channel"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)


class Sender(Protocol):
    def send(self, alert: Alert, delivery: Delivery) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, bounded by attempts and by total time per delivery."""

    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_total_s: float = 120.0
    jitter: float = 0.5  # a delay is shortened by up to this fraction, so retries of many routers spread out

    def delay(self, failures: int, rng: random.Random) -> float:
        """Wait before the next attempt, after `failures` failed attempts (1, 2, ...)."""
        return min(self.max_delay_s, self.base_delay_s * 2 ** (failures - 1)) * (1 - self.jitter * rng.random())


class _Interrupted(Exception):
    """The stop event was set while a delivery waited to retry."""


@dataclass(frozen=True)
class _Failure:
    delivery: Delivery | None  # None when the alert could not even be planned
    stage: str  # invalid | unrouted | delivery
    reason: str
    attempts: int = 0


class AlertRouter:
    def __init__(
        self,
        settings: Settings,
        routing: Routing,
        channels: dict[str, Sender],
        *,
        group_id: str = DEFAULT_GROUP_ID,
        retry: RetryPolicy = RetryPolicy(),
        seed: int | None = None,
        poll_timeout_s: float = 0.5,
    ) -> None:
        self.settings, self.routing, self.channels = settings, routing, channels
        self.group_id, self.retry, self.poll_timeout_s = group_id, retry, poll_timeout_s
        self.topic = namespaced(ALERTS, settings.namespace)
        self.dead_letter_topic = namespaced(ALERTS_UNDELIVERABLE, settings.namespace)
        self._rng = random.Random(seed)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="jw-deliver")
        self._producer = Producer(producer_config(settings.kafka_bootstrap))

    @classmethod
    def create(cls, settings: Settings, secrets: Secrets, routing: Routing, **options: Any) -> AlertRouter:
        """A router with the real channels: MQTT as jw-router, webhooks signed with each responder's key."""
        channels: dict[str, Sender] = {
            "webhook": WebhookChannel(routing, responder_keys(routing, secrets.webhook_key)),
            "mqtt": MqttChannel("127.0.0.1", settings.mqtt_port, ROUTER_USER, secrets.mqtt_password(ROUTER_USER)),
        }
        return cls(settings, routing, channels, **options)

    def run(self, stop: threading.Event) -> None:
        """Consume and route until `stop` is set; then close everything."""
        ensure_topics(self.settings.kafka_bootstrap, [ALERTS, ALERTS_UNDELIVERABLE], self.settings.namespace)
        # The poll interval must outlast the longest retry sequence, or the group evicts us mid-alert.
        max_poll_ms = max(300_000, int((self.retry.max_total_s + 60) * 1000))
        consumer = Consumer(consumer_config(self.settings.kafka_bootstrap, self.group_id, **{"max.poll.interval.ms": max_poll_ms}))
        consumer.subscribe([self.topic])
        log.info("alert router consuming %s as group %s", self.topic, self.group_id)
        try:
            while not stop.is_set():
                msg = consumer.poll(self.poll_timeout_s)
                if msg is None:
                    continue
                error = msg.error()
                if error is not None:
                    if error.fatal():
                        raise RuntimeError(f"Kafka consumer failed: {error}")
                    log.warning("Kafka consumer: %s", error)
                    continue
                if self.handle(msg, stop):
                    try:
                        consumer.commit(message=msg, asynchronous=False)
                    except KafkaException as exc:
                        # Typically a rebalance moved the partition: its new owner routes the alert
                        # again and receivers drop the duplicate deliveries by id.
                        log.warning("commit of %s failed: %s", where(msg), exc)
                elif not stop.is_set():
                    # Dead-lettering failed (Kafka trouble): read the alert again after a pause.
                    consumer.seek(TopicPartition(*position(msg)))
                    stop.wait(self.retry.base_delay_s)
        finally:
            consumer.close()
            self.close()
            log.info("alert router stopped")

    def handle(self, msg: Message, stop: threading.Event) -> bool:
        """Deliver one alert message; True when its offset may be committed."""
        ALERTS_CONSUMED.inc()
        try:
            doc = decode_json(msg.value())
        except DecodeError as exc:
            INVALID_ALERTS.inc()
            return self._dead_letter(msg, None, [_Failure(None, "invalid", str(exc))])
        errors = validation_errors("alert", doc)
        if errors:
            INVALID_ALERTS.inc()
            return self._dead_letter(msg, doc, [_Failure(None, "invalid", "not a valid jw.alert.v2: " + "; ".join(errors))])
        alert: Alert = doc
        failures = [
            _Failure(None, "unrouted", f"region {region!r} is not in the routing table {self.routing.source}")
            for region in unrouted_regions(alert, self.routing)
        ]
        plan = plan_deliveries(alert, self.routing)
        log.info(
            "alert %s %s %s/%s %s->%s (origin %s): %d deliveries",
            alert["alert_id"], alert["subject"], alert["kind"], alert["indicator"], alert["previous_tier"], alert["tier"],
            alert["origin_region"], len(plan),
        )
        futures = [self._pool.submit(self._deliver, alert, d, stop) for d in plan]
        try:
            failures += [f for f in (fut.result() for fut in futures) if f is not None]
        except _Interrupted:
            log.info("stopping: %s left uncommitted, it will be routed again", where(msg))
            return False
        return self._dead_letter(msg, alert, failures) if failures else True

    def _deliver(self, alert: Alert, delivery: Delivery, stop: threading.Event) -> _Failure | None:
        channel = self.channels[delivery.channel]
        labels = (delivery.channel, delivery.role)
        started = time.monotonic()
        deadline = started + self.retry.max_total_s
        attempt = 0
        while True:
            attempt += 1
            try:
                channel.send(alert, delivery)
            except DeliveryError as exc:
                pause = self.retry.delay(attempt, self._rng)
                if not exc.retryable or attempt >= self.retry.max_attempts or time.monotonic() + pause > deadline:
                    DELIVERIES.labels(*labels, "failed").inc()
                    log.error("gave up %s after %d attempt(s): %s", _describe(delivery), attempt, exc.reason)
                    return _Failure(delivery, "delivery", exc.reason, attempt)
                DELIVERIES.labels(*labels, "retried").inc()
                log.warning("attempt %d of %s failed, retrying in %.2f s: %s", attempt, _describe(delivery), pause, exc.reason)
                if stop.wait(pause):
                    raise _Interrupted from None
                continue
            DELIVERIES.labels(*labels, "delivered").inc()
            DELIVERY_LATENCY.labels(delivery.channel).observe(time.monotonic() - started)
            log.info("delivered %s %s (attempt %d)", alert["alert_id"], _describe(delivery), attempt)
            return None

    def _dead_letter(self, msg: Message, doc: Any, failures: list[_Failure]) -> bool:
        """Write one document per failure and flush; True when Kafka has them all."""
        errors: list[KafkaError] = []
        raw = msg.value()
        topic, partition, offset = position(msg)
        for failure in failures:
            record = {
                "schema": UNDELIVERABLE_SCHEMA,
                "stage": failure.stage,
                "reason": failure.reason,
                "attempts": failure.attempts,
                "delivery": None if failure.delivery is None else asdict(failure.delivery),
                "alert": doc,
                "raw": raw.decode("utf-8", "replace") if doc is None and raw is not None else None,
                "source": {"topic": topic, "partition": partition, "offset": offset},
                "dead_lettered_at": int(time.time() * 1000),
            }
            self._producer.produce(
                self.dead_letter_topic,
                key=_dead_letter_key(failure, doc).encode(),
                value=encode_json(record),
                on_delivery=lambda err, _msg: errors.append(err) if err else None,
            )
        unflushed = self._producer.flush(30)
        if unflushed or errors:
            log.error("could not dead-letter %s: %d unflushed, errors %s", where(msg), unflushed, errors)
            return False
        for failure in failures:
            DEAD_LETTERED.labels(failure.stage).inc()
            log.error("dead-lettered %s (%s): %s", where(msg), failure.stage, failure.reason)
        return True

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._producer.flush(10)
        for channel in self.channels.values():
            channel.close()


def _dead_letter_key(failure: _Failure, doc: Any) -> str:
    """Region key of the dead letter: the delivery's region, else the alert's, else 'unknown'."""
    if failure.delivery is not None:
        return failure.delivery.region
    if isinstance(doc, dict) and isinstance(doc.get("region"), str):
        return doc["region"]
    return "unknown"


def _describe(delivery: Delivery) -> str:
    who = delivery.responder_id or delivery.target
    return f"{delivery.channel}:{who} ({delivery.region} {delivery.role})"
