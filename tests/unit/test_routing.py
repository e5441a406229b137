"""Routing table validation and the pure delivery plan (origin leads, affected assist)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.routing import Delivery, Routing, load_routing, plan_deliveries, unrouted_regions
from jointwatch.settings import REPO_ROOT
from schemas.errors import ConfigError
from schemas.network import load_network
from tests.samples import sample_alert

REGIONS = ("north", "central", "south")


def responder(rid: str, **over: Any) -> dict[str, Any]:
    return {"id": rid, "webhook": f"http://127.0.0.1:9/hooks/{rid}", "secret_ref": rid, **over}


def routing_doc(**regions: Any) -> dict[str, Any]:
    return {"version": 1, "regions": regions}


def write(tmp_path: Path, doc: Any) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return path


def load(tmp_path: Path, doc: Any, env: dict[str, str] | None = None) -> Routing:
    return load_routing(write(tmp_path, doc), REGIONS, env or {})


# --- loading -----------------------------------------------------------------------------


def test_shipped_routing_file_loads_against_the_shipped_network() -> None:
    network = load_network(REPO_ROOT / "config" / "network.yaml")
    routing = load_routing(REPO_ROOT / "config" / "routing.yaml", network.regions, {"JW_RESPONDER_PORT": "18123"})
    assert set(routing.regions) == set(network.regions)
    assert all(r.webhook.startswith("http://127.0.0.1:18123/hooks/") for r in routing.responders())
    assert routing.regions["north"].mqtt_topic == "jw/v1/alerts/north"


def test_port_default_applies_when_env_var_is_unset() -> None:
    routing = load_routing(REPO_ROOT / "config" / "routing.yaml", REGIONS, {})
    assert routing.responder("north-duty").webhook == "http://127.0.0.1:17095/hooks/north-duty"


def test_defaults_and_regions_missing_from_the_file(tmp_path: Path) -> None:
    routing = load(tmp_path, routing_doc(north={"responders": [responder("n1")]}))
    n1 = routing.responder("n1")
    assert (n1.min_tier, n1.roles, n1.name) == ("yellow", frozenset({"lead", "assist"}), "n1")
    assert routing.regions["south"].mqtt_topic == "jw/v1/alerts/south"
    assert routing.regions["south"].responders == ()
    assert routing.secret_refs() == ["n1"]


def test_env_substitution_without_default_needs_the_variable(tmp_path: Path) -> None:
    doc = routing_doc(north={"responders": [responder("n1", webhook="http://127.0.0.1:${PORT_X}/hooks/n1")]})
    assert load(tmp_path, doc, {"PORT_X": "1234"}).responder("n1").webhook == "http://127.0.0.1:1234/hooks/n1"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, doc)
    assert err.value.key == "regions.north.responders[0].webhook" and "PORT_X" in err.value.reason


@pytest.mark.parametrize(
    ("doc", "key", "reason"),
    [
        (routing_doc(west={}), "regions.west", "unknown region"),
        (routing_doc(north={"responders": [responder("n1", webhook="ftp://x/hooks")]}), "regions.north.responders[0].webhook", "http(s) URL"),
        (routing_doc(north={"responders": [responder("n1", webhook="http://127.0.0.1:99999/")]}), "regions.north.responders[0].webhook", "URL"),
        (routing_doc(north={"responders": [responder("n1", webhook="not a url")]}), "regions.north.responders[0].webhook", "URL"),
        (routing_doc(north={"responders": [responder("n1", min_tier="orange")]}), "regions.north.responders[0].min_tier", "orange"),
        (routing_doc(north={"responders": [responder("n1", roles=["lead", "boss"])]}), "regions.north.responders[0].roles", "boss"),
        (routing_doc(north={"responders": [responder("n1", roles=[])]}), "regions.north.responders[0].roles", "non-empty"),
        (
            routing_doc(north={"responders": [responder("d1")]}, south={"responders": [responder("d1")]}),
            "regions.south.responders[0].id", "duplicate responder id 'd1'",
        ),
        (routing_doc(north={"responders": [{"id": "n1", "webhook": "http://h/"}]}), "regions.north.responders[0].secret_ref", "required"),
        (routing_doc(north={"responders": [{"secret_ref": "n1", "webhook": "http://h/"}]}), "regions.north.responders[0].id", "required"),
        (routing_doc(north={"responders": [responder("n1", secret="hunter2")]}), "regions.north.responders[0].secret", "unknown key"),
        (routing_doc(north={"responders": [responder("N 1")]}), "regions.north.responders[0].id", "must match"),
        (routing_doc(north={"mqtt_topic": "jw/v1/alerts/#"}), "regions.north.mqtt_topic", "wildcards"),
        (routing_doc(north={"responders": {"id": "n1"}}), "regions.north.responders", "list"),
        ({"version": 2, "regions": {}}, "version", "must be 1"),
        ({"version": 1}, "regions", "required"),
        ([1, 2], "<root>", "mapping"),
        ("version: [1\n", "<yaml>", ""),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path: Path, doc: Any, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, doc)
    assert err.value.file == str(tmp_path / "routing.yaml")
    assert err.value.key == key
    assert reason in err.value.reason


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_routing(tmp_path / "nope.yaml", REGIONS)
    assert err.value.key == "<file>"


# --- planning ----------------------------------------------------------------------------


@pytest.fixture()
def routing(tmp_path: Path) -> Routing:
    return load(
        tmp_path,
        routing_doc(
            north={"responders": [responder("n-duty"), responder("n-cmd", min_tier="red", roles=["lead"])]},
            central={"responders": [responder("c-duty"), responder("c-lead-only", roles=["lead"])]},
            south={"responders": [responder("s-duty", min_tier="green")]},
        ),
    )


def webhooks(plan: list[Delivery]) -> set[tuple[str, str, str | None]]:
    return {(d.region, d.role, d.responder_id) for d in plan if d.channel == "webhook"}


def test_origin_leads_and_affected_assist(routing: Routing) -> None:
    plan = plan_deliveries(sample_alert(), routing)
    assert [(d.region, d.role, d.target) for d in plan if d.channel == "mqtt"] == [
        ("north", "lead", "jw/v1/alerts/north"),
        ("central", "assist", "jw/v1/alerts/central"),
    ]
    # n-cmd: red and lead; c-lead-only does not assist; south is not affected.
    assert webhooks(plan) == {("north", "lead", "n-duty"), ("north", "lead", "n-cmd"), ("central", "assist", "c-duty")}
    hook = next(d for d in plan if d.responder_id == "n-duty")
    assert hook.target == "http://127.0.0.1:9/hooks/n-duty"


def test_min_tier_filters_webhooks_but_not_the_mqtt_feed(routing: Routing) -> None:
    plan = plan_deliveries(sample_alert(tier="yellow", previous_tier="green", threshold=75.0), routing)
    assert webhooks(plan) == {("north", "lead", "n-duty"), ("central", "assist", "c-duty")}
    assert {d.region for d in plan if d.channel == "mqtt"} == {"north", "central"}


def test_green_raise_only_reaches_green_subscribers(tmp_path: Path, routing: Routing) -> None:
    # green -> green cannot happen, so use a south-origin alert to see the green responder.
    plan = plan_deliveries(sample_alert(origin_region="south", affected_regions=[], tier="yellow", previous_tier="green"), routing)
    assert webhooks(plan) == {("south", "lead", "s-duty")}


def test_clear_reaches_everyone_who_got_the_raise(routing: Routing) -> None:
    raise_ = plan_deliveries(sample_alert(tier="red", previous_tier="yellow"), routing)
    clear = plan_deliveries(sample_alert(tier="green", previous_tier="red", threshold=None), routing)
    assert webhooks(clear) == webhooks(raise_)
    step_down = plan_deliveries(sample_alert(tier="yellow", previous_tier="red"), routing)
    assert ("north", "lead", "n-cmd") in webhooks(step_down)


def test_origin_listed_as_affected_and_duplicates_are_planned_once(routing: Routing) -> None:
    plan = plan_deliveries(sample_alert(affected_regions=["central", "north", "central"]), routing)
    assert [(d.region, d.role) for d in plan if d.channel == "mqtt"] == [("north", "lead"), ("central", "assist")]


def test_unknown_regions_are_reported_not_planned(routing: Routing) -> None:
    alert = sample_alert(affected_regions=["central", "atlantis"])
    assert unrouted_regions(alert, routing) == ["atlantis"]
    assert "atlantis" not in {d.region for d in plan_deliveries(alert, routing)}
