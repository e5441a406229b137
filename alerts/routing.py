"""The routing table (config/routing.yaml) and the pure plan of who gets an alert.

The rule for cross-border incidents: the origin region leads, the affected
regions assist. Every region's console feed (MQTT) gets all of its alerts;
webhook responders get those at or above their min_tier, in the roles they
asked for. A clear (tier lower than the previous tier) is filtered by the
higher of the two tiers, so it reaches everyone who received the raise.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from schemas.errors import ConfigError
from schemas.models import Alert, Tier
from schemas.network import ID_PATTERN
from schemas.topics import MQTT_ALERTS

Role = Literal["lead", "assist"]
Channel = Literal["mqtt", "webhook"]
TIERS: tuple[Tier, ...] = ("green", "yellow", "red")  # ascending severity
ROLES: tuple[Role, ...] = ("lead", "assist")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Responder:
    id: str
    name: str
    webhook: str
    secret_ref: str
    min_tier: Tier = "yellow"
    roles: frozenset[Role] = frozenset(ROLES)


@dataclass(frozen=True)
class RegionRoute:
    region: str
    mqtt_topic: str
    responders: tuple[Responder, ...] = ()


@dataclass(frozen=True)
class Routing:
    regions: dict[str, RegionRoute]
    source: str = ""

    def responders(self) -> list[Responder]:
        return [r for route in self.regions.values() for r in route.responders]

    def responder(self, responder_id: str) -> Responder:
        for r in self.responders():
            if r.id == responder_id:
                return r
        raise KeyError(f"no responder {responder_id!r} in {self.source or 'the routing table'}")

    def secret_refs(self) -> list[str]:
        """Signing keys the stack must provision (see jointwatch.stack.secrets)."""
        return sorted({r.secret_ref for r in self.responders()})


@dataclass(frozen=True)
class Delivery:
    region: str
    role: Role
    channel: Channel
    target: str  # MQTT topic or webhook URL
    responder_id: str | None = None  # None for the region's MQTT feed


def tier_rank(tier: Tier) -> int:
    return TIERS.index(tier)


def plan_deliveries(alert: Alert, routing: Routing) -> list[Delivery]:
    """Every delivery an alert needs: origin region as lead, affected regions as assist.

    Regions absent from the routing table get nothing here; see unrouted_regions.
    """
    severity = max(tier_rank(alert["tier"]), tier_rank(alert["previous_tier"]))
    plan: list[Delivery] = []
    for region, role in _regions_with_roles(alert):
        route = routing.regions.get(region)
        if route is None:
            continue
        plan.append(Delivery(region, role, "mqtt", route.mqtt_topic))
        plan.extend(
            Delivery(region, role, "webhook", r.webhook, r.id)
            for r in route.responders
            if role in r.roles and severity >= tier_rank(r.min_tier)
        )
    return plan


def unrouted_regions(alert: Alert, routing: Routing) -> list[str]:
    """Regions the alert names that the routing table does not know (cannot be delivered)."""
    return [region for region, _ in _regions_with_roles(alert) if region not in routing.regions]


def _regions_with_roles(alert: Alert) -> list[tuple[str, Role]]:
    origin = alert["origin_region"]
    assists = dict.fromkeys(r for r in alert["affected_regions"] if r != origin)  # ordered, deduplicated
    return [(origin, "lead"), *((r, "assist") for r in assists)]


def load_routing(path: str | Path, known_regions: Iterable[str], env: Mapping[str, str] | None = None) -> Routing:
    """Load and validate a routing file; `env` (default os.environ) fills ${VAR} in webhook URLs.

    Known regions missing from the file still get their default MQTT feed, so a
    region without responders sees its alerts on its console.
    """
    file = Path(path)
    try:
        doc = yaml.safe_load(file.read_text())
    except FileNotFoundError:
        raise ConfigError(file, "<file>", "does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, "<yaml>", str(exc).replace("\n", " ")) from None
    return parse_routing(doc, file, known_regions, os.environ if env is None else env)


def parse_routing(doc: Any, file: Path, known_regions: Iterable[str], env: Mapping[str, str]) -> Routing:
    known = list(known_regions)
    if not isinstance(doc, dict):
        raise ConfigError(file, "<root>", "must be a mapping with 'version' and 'regions'")
    if doc.get("version") != 1:
        raise ConfigError(file, "version", f"must be 1, got {doc.get('version')!r}")
    unknown_keys = set(doc) - {"version", "regions"}
    if unknown_keys:
        raise ConfigError(file, min(unknown_keys), "unknown key (known: regions, version)")
    regions_doc = doc.get("regions")
    if not isinstance(regions_doc, dict):
        raise ConfigError(file, "regions", "is required: a mapping of region id to its route")
    seen_ids: set[str] = set()
    routes: dict[str, RegionRoute] = {}
    for region, route_doc in regions_doc.items():
        where = f"regions.{region}"
        if region not in known:
            raise ConfigError(file, where, f"unknown region {region!r} (known: {sorted(known)})")
        if route_doc is None:
            route_doc = {}
        if not isinstance(route_doc, dict):
            raise ConfigError(file, where, "must be a mapping")
        _no_unknown_keys(route_doc, {"mqtt_topic", "responders"}, where, file)
        topic = route_doc.get("mqtt_topic", MQTT_ALERTS.format(region=region))
        if not isinstance(topic, str) or not topic or any(c in topic for c in "#+\0"):
            raise ConfigError(file, f"{where}.mqtt_topic", f"must be an MQTT topic name without wildcards, got {topic!r}")
        responders_doc = route_doc.get("responders", [])
        if not isinstance(responders_doc, list):
            raise ConfigError(file, f"{where}.responders", "must be a list")
        responders = []
        for i, r in enumerate(responders_doc):
            responder = _parse_responder(r, f"{where}.responders[{i}]", file, env)
            if responder.id in seen_ids:
                raise ConfigError(file, f"{where}.responders[{i}].id", f"duplicate responder id {responder.id!r}")
            seen_ids.add(responder.id)
            responders.append(responder)
        routes[region] = RegionRoute(region, topic, tuple(responders))
    for region in known:
        routes.setdefault(region, RegionRoute(region, MQTT_ALERTS.format(region=region)))
    return Routing(routes, str(file))


def _parse_responder(doc: Any, where: str, file: Path, env: Mapping[str, str]) -> Responder:
    if not isinstance(doc, dict):
        raise ConfigError(file, where, "must be a mapping with id, webhook, secret_ref")
    _no_unknown_keys(doc, {"id", "name", "webhook", "secret_ref", "min_tier", "roles"}, where, file)
    rid = _required_str(doc, "id", where, file)
    if not ID_PATTERN.match(rid):
        raise ConfigError(file, f"{where}.id", f"{rid!r} must match {ID_PATTERN.pattern}")
    url = _substitute(_required_str(doc, "webhook", where, file), env, f"{where}.webhook", file)
    _check_url(url, f"{where}.webhook", file)
    secret_ref = _required_str(doc, "secret_ref", where, file)
    min_tier = doc.get("min_tier", "yellow")
    if min_tier not in TIERS:
        raise ConfigError(file, f"{where}.min_tier", f"must be one of {list(TIERS)}, got {min_tier!r}")
    roles = doc.get("roles", list(ROLES))
    if not isinstance(roles, list) or not roles or any(r not in ROLES for r in roles):
        raise ConfigError(file, f"{where}.roles", f"must be a non-empty list of {list(ROLES)}, got {roles!r}")
    name = doc.get("name", rid)
    if not isinstance(name, str):
        raise ConfigError(file, f"{where}.name", f"must be a string, got {name!r}")
    return Responder(rid, name, url, secret_ref, min_tier, frozenset(roles))


def _required_str(doc: dict[str, Any], key: str, where: str, file: Path) -> str:
    if key not in doc:
        raise ConfigError(file, f"{where}.{key}", "is required")
    value = doc[key]
    if not isinstance(value, str) or not value:
        raise ConfigError(file, f"{where}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _no_unknown_keys(doc: dict[str, Any], allowed: set[str], where: str, file: Path) -> None:
    for key in doc:
        if key not in allowed:
            raise ConfigError(file, f"{where}.{key}", f"unknown key (known: {sorted(allowed)})")


def _substitute(value: str, env: Mapping[str, str], key: str, file: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name):
            return env[name]
        if default is None:
            raise ConfigError(file, key, f"environment variable {name} is not set and has no default (${{{name}:-default}})")
        return default

    return _ENV_REF.sub(replace, value)


def _check_url(url: str, key: str, file: Path) -> None:
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError as exc:
        raise ConfigError(file, key, f"bad URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(file, key, f"must be an http(s) URL with a host, got {url!r}")
