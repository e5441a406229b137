"""The alert router against real Kafka, Mosquitto (auth + ACL) and a real HTTP responder."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from alerts.channels import responder_keys
from alerts.responder import ConsoleSubscriber, Received, ResponderServer
from alerts.router import AlertRouter, RetryPolicy
from alerts.routing import Routing, load_routing
from alerts.signing import delivery_id
from connectors.kafka_io import committed_offsets, encode_json, producer_config
from jointwatch.settings import Settings
from jointwatch.stack.secrets import Secrets
from schemas.topics import ALERTS, ALERTS_UNDELIVERABLE, namespaced
from tests.integration import background
from tests.integration.kafka_read import read_until
from tests.samples import sample_alert

pytestmark = pytest.mark.integration

RESPONDERS = {"north": "t-north-duty", "central": "t-central-duty", "south": "t-south-duty"}
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay_s=0.3, max_delay_s=1.0, max_total_s=15.0)


@dataclasses.dataclass
class Harness:
    settings: Settings
    secrets: Secrets
    routing: Routing
    server: ResponderServer
    consoles: dict[str, ConsoleSubscriber]
    group_id: str

    def router(self, retry: RetryPolicy = FAST_RETRY) -> AlertRouter:
        return AlertRouter.create(self.settings, self.secrets, self.routing, group_id=self.group_id, retry=retry, seed=7)

    def produce(self, value: bytes, key: str = "north") -> None:
        producer = Producer(producer_config(self.settings.kafka_bootstrap))
        producer.produce(namespaced(ALERTS, self.settings.namespace), key=key.encode(), value=value)
        assert producer.flush(10) == 0

    def committed(self) -> int:
        """The group's committed offsets on the alert topic, summed over partitions (0 when none)."""
        return committed_offsets(self.settings.kafka_bootstrap, self.group_id, [ALERTS], self.settings.namespace)[ALERTS.name]

    def wait_committed(self, expected: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.committed()) != expected:
            assert time.monotonic() < deadline, f"committed offsets {got}, expected {expected}"
            time.sleep(0.2)


@pytest.fixture()
def harness(stack: Any, tmp_path: Path) -> Iterator[Harness]:
    settings: Settings = stack.isolated()
    # Test-only signing keys; a real deployment gets them from the secrets file or environment.
    secrets = dataclasses.replace(stack.secrets, webhook={**stack.secrets.webhook, **{r: uuid.uuid4().hex for r in RESPONDERS.values()}})
    server = ResponderServer({}, port=0)
    routing_file = tmp_path / "routing.yaml"
    routing_file.write_text(yaml.safe_dump({"version": 1, "regions": {
        region: {"responders": [{
            "id": rid, "webhook": f"http://127.0.0.1:${{TEST_PORT}}/hooks/{rid}", "secret_ref": rid, "min_tier": "yellow",
        }]}
        for region, rid in RESPONDERS.items()
    }}))
    routing = load_routing(routing_file, stack.network.regions, {"TEST_PORT": str(server.port)})
    server.keys.update(responder_keys(routing, secrets.webhook_key))
    consoles = {region: ConsoleSubscriber.for_region(settings, stack.secrets, region) for region in RESPONDERS}
    with server:
        for console in consoles.values():
            console.start()
        try:
            yield Harness(settings, secrets, routing, server, consoles, f"jw-router-test-{uuid.uuid4().hex[:8]}")
        finally:
            for console in consoles.values():
                console.stop()


def running(router: AlertRouter) -> AbstractContextManager[threading.Event]:
    return background.running(router.run, "router-under-test")


def make_alert(**over: Any) -> dict[str, Any]:
    """A fresh alert (unique id, current window) led by north with central assisting."""
    return dict(sample_alert(**{"alert_id": f"a-{uuid.uuid4().hex[:12]}", "window_end": int(time.time()) * 1000, **over}))


def for_responder(rid: str) -> Any:
    return lambda items: any(r.responder_id == rid for r in items)


def dead_letters(settings: Settings, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    topic = namespaced(ALERTS_UNDELIVERABLE, settings.namespace)
    return [doc for _, doc in read_until(settings.kafka_bootstrap, [topic], lambda got: len(got) >= count, timeout)]


def test_origin_leads_affected_assist_others_get_nothing(harness: Harness) -> None:
    alert = make_alert()
    harness.produce(encode_json(alert))
    with running(harness.router()):
        got = harness.server.received.wait_for(
            lambda items: for_responder(RESPONDERS["north"])(items) and for_responder(RESPONDERS["central"])(items), 30
        )
        north_feed = harness.consoles["north"].messages.wait_for(lambda m: len(m) >= 1, 15)
        central_feed = harness.consoles["central"].messages.wait_for(lambda m: len(m) >= 1, 15)
        harness.wait_committed(1)
        time.sleep(1.0)  # give a wrong delivery to the third region time to show up

    by_responder: dict[str, Received] = {r.responder_id: r for r in got}
    lead, assist = by_responder[RESPONDERS["north"]], by_responder[RESPONDERS["central"]]
    assert lead.alert["delivery"]["role"] == "lead" and lead.alert["delivery"]["region"] == "north"
    assert assist.alert["delivery"]["role"] == "assist" and assist.alert["delivery"]["region"] == "central"
    assert lead.delivery_id == delivery_id(alert["alert_id"], RESPONDERS["north"], "lead")
    assert {k: v for k, v in lead.alert.items() if k != "delivery"} == alert
    # Every request carried a valid signature (the responder answers 401 otherwise and records nothing).
    assert harness.server.attempts(RESPONDERS["north"]) == 1 and harness.server.attempts(RESPONDERS["central"]) == 1

    assert [(m["alert_id"], m["delivery"]["role"]) for m in north_feed] == [(alert["alert_id"], "lead")]
    assert [(m["alert_id"], m["delivery"]["role"]) for m in central_feed] == [(alert["alert_id"], "assist")]
    assert harness.consoles["south"].messages.items() == []
    assert harness.server.attempts(RESPONDERS["south"]) == 0
    assert len(harness.server.received.items()) == 2


def test_offset_is_committed_only_after_retries_succeed(harness: Harness) -> None:
    north = RESPONDERS["north"]
    harness.server.fail_next(north, 2, status=503)
    alert = make_alert(affected_regions=[])
    harness.produce(encode_json(alert))
    before = REGISTRY.get_sample_value("jw_router_deliveries_total", {"channel": "webhook", "role": "lead", "outcome": "retried"}) or 0
    with running(harness.router(RetryPolicy(max_attempts=5, base_delay_s=1.0, max_delay_s=2.0, max_total_s=20.0))):
        deadline = time.monotonic() + 30
        while harness.server.attempts(north) < 1:
            assert time.monotonic() < deadline, "the router never tried the webhook"
            time.sleep(0.05)
        # Read the commit first: if nothing was delivered after that read, it was made before delivery.
        committed_meanwhile = harness.committed()
        assert harness.server.received.items() == [], "delivered before the first backoff elapsed"
        assert committed_meanwhile == 0

        harness.server.received.wait_for(for_responder(north), 30)
        harness.wait_committed(1)
    assert harness.server.attempts(north) == 3
    after = REGISTRY.get_sample_value("jw_router_deliveries_total", {"channel": "webhook", "role": "lead", "outcome": "retried"})
    assert after == before + 2
    assert dead_letters(harness.settings, 1, timeout=3) == []


def test_permanently_failing_webhook_is_dead_lettered_then_committed(harness: Harness) -> None:
    north, central = RESPONDERS["north"], RESPONDERS["central"]
    harness.server.fail_next(north, 1000, status=503)
    harness.server.fail_next(central, 1000, status=410)  # permanent: no retry
    alert = make_alert()
    harness.produce(encode_json(alert))
    with running(harness.router(RetryPolicy(max_attempts=3, base_delay_s=0.1, max_delay_s=0.2, max_total_s=10.0))):
        letters = dead_letters(harness.settings, 2)
        harness.wait_committed(1)
        harness.consoles["north"].messages.wait_for(lambda m: len(m) == 1, 10)  # the MQTT feed still got it

    by_responder = {d["delivery"]["responder_id"]: d for d in letters}
    assert set(by_responder) == {north, central}
    assert by_responder[north]["attempts"] == 3 and "HTTP 503" in by_responder[north]["reason"]
    assert by_responder[central]["attempts"] == 1 and "HTTP 410" in by_responder[central]["reason"]
    assert all(d["stage"] == "delivery" and d["alert"] == alert for d in letters)
    assert by_responder[central]["delivery"]["role"] == "assist"
    assert harness.server.attempts(north) == 3 and harness.server.attempts(central) == 1


def test_invalid_alert_is_dead_lettered_and_skipped(harness: Harness) -> None:
    harness.produce(b"not json at all")
    harness.produce(encode_json({**make_alert(), "tier": "purple"}))
    good = make_alert(affected_regions=[])
    harness.produce(encode_json(good))
    with running(harness.router()):
        harness.server.received.wait_for(for_responder(RESPONDERS["north"]), 30)
        letters = dead_letters(harness.settings, 2)
        harness.wait_committed(3)
    assert [d["stage"] for d in letters] == ["invalid", "invalid"]
    assert "not JSON" in letters[0]["reason"] and letters[0]["raw"] == "not json at all"
    assert "tier" in letters[1]["reason"] and letters[1]["alert"]["tier"] == "purple"
    assert [r.alert["alert_id"] for r in harness.server.received.items()] == [good["alert_id"]]
