"""Credentials of the local stack: generated once per state directory, never in code.

`secrets.yaml` (mode 0600) in the state directory holds the MQTT passwords of the
services and of every device, the InfluxDB admin password and the webhook
signing keys. Any value can be overridden from the environment, e.g.
JW_SECRET_MQTT_JW_BRIDGE or JW_SECRET_WEBHOOK_NORTH_DUTY, which is how a real
deployment injects them.
"""

from __future__ import annotations

import os
import re
import secrets as _random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import yaml

from schemas.errors import ConfigError, read_yaml

BRIDGE_USER = "jw-bridge"
ROUTER_USER = "jw-router"
SERVICE_USERS = (BRIDGE_USER, ROUTER_USER)


def console_user(region: str) -> str:
    """MQTT user of a region's monitoring centre: may read only its region's alerts."""
    return f"jw-console-{region}"


def _env_name(kind: str, name: str) -> str:
    return "JW_SECRET_" + re.sub(r"[^A-Z0-9]", "_", f"{kind}_{name}".upper())


@dataclass(frozen=True)
class Secrets:
    mqtt: dict[str, str]  # MQTT username -> password (services, consoles, devices = station ids)
    webhook: dict[str, str]  # responder secret_ref -> HMAC-SHA256 key
    influx_user: str
    influx_password: str

    def mqtt_password(self, user: str) -> str:
        env = os.environ.get(_env_name("mqtt", user))
        if env:
            return env
        try:
            return self.mqtt[user]
        except KeyError:
            raise KeyError(f"no MQTT credentials for {user!r}; run `jointwatch stack up` to provision them") from None

    def webhook_key(self, ref: str) -> bytes:
        env = os.environ.get(_env_name("webhook", ref))
        if env:
            return env.encode()
        try:
            return self.webhook[ref].encode()
        except KeyError:
            raise KeyError(f"no webhook signing key {ref!r}; set {_env_name('webhook', ref)} or run `jointwatch stack up`") from None

    @property
    def influx_token(self) -> str:
        # InfluxDB 1.8's v2-compatible API takes "user:password" as the token.
        return f"{self.influx_user}:{os.environ.get(_env_name('influx', self.influx_user)) or self.influx_password}"


def load_secrets(path: Path) -> Secrets:
    if not path.exists():
        raise ConfigError(path, "<file>", "does not exist; run `jointwatch stack up` first")
    doc = read_yaml(path)
    try:
        return Secrets(dict(doc["mqtt"]), dict(doc["webhook"]), str(doc["influx_user"]), str(doc["influx_password"]))
    except (KeyError, TypeError) as exc:
        raise ConfigError(path, str(exc), "missing or malformed") from None


def ensure_secrets(path: Path, mqtt_users: Iterable[str], webhook_refs: Iterable[str]) -> Secrets:
    """Load the secrets file, adding a random secret for every user or key it lacks."""
    current = load_secrets(path) if path.exists() else Secrets({}, {}, "jw-admin", _random.token_urlsafe(18))
    mqtt = dict(current.mqtt)
    webhook = dict(current.webhook)
    for user in mqtt_users:
        mqtt.setdefault(user, _random.token_urlsafe(18))
    for ref in webhook_refs:
        webhook.setdefault(ref, _random.token_urlsafe(32))
    result = Secrets(mqtt, webhook, current.influx_user, current.influx_password)
    if result != current or not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.touch(mode=0o600)
        except OSError as exc:
            raise ConfigError(path.parent, "state_dir", f"cannot be written ({exc.strerror}); pick another --state-dir") from None
        tmp.write_text(yaml.safe_dump({"mqtt": mqtt, "webhook": webhook, "influx_user": result.influx_user, "influx_password": result.influx_password}))
        tmp.replace(path)
    return result
