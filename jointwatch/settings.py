"""Where the local stack lives and which loopback ports it uses.

Defaults suit one developer machine; every value can come from a YAML file
(`--config`) or the environment (JW_STATE_DIR, JW_PORT_BASE), so tests and the
demo can run side by side on different ports and state directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError, read_yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PORT_BASE = 17000

# Offsets from the port base, one per service; a fixed layout keeps `status` simple.
PORT_OFFSETS = {
    "mqtt_port": 883,
    "kafka_port": 92,
    "kafka_controller_port": 93,
    "influx_port": 86,
    "influx_rpc_port": 88,
    "flink_rest_port": 81,
    "flink_rpc_port": 123,
    "metrics_port": 900,  # Prometheus /metrics of the bridge (or of the demo's all-in-one process)
}


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    port_base: int = DEFAULT_PORT_BASE
    network_file: Path = REPO_ROOT / "config" / "network.yaml"
    routing_file: Path = REPO_ROOT / "config" / "routing.yaml"
    tier_rules_file: Path = REPO_ROOT / "config" / "tier_rules.yaml"
    clock_file: Path = REPO_ROOT / "config" / "clock.yaml"  # the bridge's clock-skew correction
    alignment_file: Path = REPO_ROOT / "config" / "alignment.yaml"  # the job's event-time settings
    calibration_file: Path = REPO_ROOT / "config" / "calibration.yaml"  # the registry provisioned at start, and drift pairs
    deps_dir: Path = REPO_ROOT / ".deps"
    influx_bin: Path = REPO_ROOT / ".deps" / "bin" / "influxd"
    influx_db: str = "jointwatch"
    kafka_heap: str = "768m"
    namespace: str = ""  # Kafka topic prefix: '' in production, set for replays and tests

    def port(self, name: str) -> int:
        return self.port_base + PORT_OFFSETS[name]

    @property
    def mqtt_port(self) -> int:
        return self.port("mqtt_port")

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.port('kafka_port')}"

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.port('influx_port')}"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.yaml"

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Defaults < YAML file < environment < explicit overrides."""
    values: dict[str, Any] = {"state_dir": REPO_ROOT / ".state"}
    known = {f.name: f for f in fields(Settings)}
    if config_file is not None:
        file = Path(config_file)
        doc = read_yaml(file) or {}
        if not isinstance(doc, dict):
            raise ConfigError(file, "<root>", "must be a mapping")
        for key, value in doc.items():
            if key not in known:
                raise ConfigError(file, key, f"unknown setting (known: {sorted(known)})")
            values[key] = value
        _check_types(values, file)
    if "JW_STATE_DIR" in os.environ:
        values["state_dir"] = os.environ["JW_STATE_DIR"]
    if "JW_PORT_BASE" in os.environ:
        values["port_base"] = os.environ["JW_PORT_BASE"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    _check_types(values, "--port-base/JW_PORT_BASE")
    for key in ("state_dir", "network_file", "routing_file", "tier_rules_file", "clock_file", "alignment_file", "calibration_file", "deps_dir", "influx_bin"):
        if key in values:
            values[key] = Path(values[key]).expanduser().resolve()
    return Settings(**values)


def _check_types(values: dict[str, Any], source: str | Path) -> None:
    if "port_base" in values:
        try:
            values["port_base"] = int(values["port_base"])
        except (TypeError, ValueError):
            raise ConfigError(source, "port_base", f"must be an integer, got {values['port_base']!r}") from None
        if not 1024 <= values["port_base"] <= 64000:
            raise ConfigError(source, "port_base", f"must be within 1024..64000, got {values['port_base']}")
