"""The first tier rule: thresholds on rolling one-hour means, loaded from YAML and validated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.errors import ConfigError, read_yaml
from schemas.models import Tier
from schemas.parameters import PARAMETERS

TIERS: tuple[Tier, ...] = ("green", "yellow", "red")


@dataclass(frozen=True)
class Thresholds:
    yellow: float
    red: float


@dataclass(frozen=True)
class TierRules:
    rule_id: str
    version: int
    min_minutes: int
    thresholds: dict[str, Thresholds]


def tier_of(rules: TierRules, parameter: str, mean: float) -> Tier:
    """Reference implementation of the rule the job compiles to SQL (used by tests and replay)."""
    t = rules.thresholds.get(parameter)
    if t is None or mean <= t.yellow:
        return "green"
    return "red" if mean > t.red else "yellow"


def parse_tier_rules(doc: Any, file: Path) -> TierRules:
    if not isinstance(doc, dict):
        raise ConfigError(file, "<root>", "must be a mapping")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(file, "version", f"must be a positive integer, got {version!r}")
    rule_id = doc.get("rule_id")
    if not isinstance(rule_id, str) or not rule_id:
        raise ConfigError(file, "rule_id", "must be a non-empty string")
    min_minutes = doc.get("min_minutes", 45)
    if not isinstance(min_minutes, int) or not 1 <= min_minutes <= 60:
        raise ConfigError(file, "min_minutes", f"must be an integer in 1..60, got {min_minutes!r}")
    raw = doc.get("thresholds")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(file, "thresholds", "must map parameter -> {yellow, red}")
    thresholds: dict[str, Thresholds] = {}
    for param, t in raw.items():
        key = f"thresholds.{param}"
        if param not in PARAMETERS:
            raise ConfigError(file, key, f"unknown parameter (known: {sorted(PARAMETERS)})")
        if not isinstance(t, dict) or set(t) != {"yellow", "red"}:
            raise ConfigError(file, key, "must have exactly 'yellow' and 'red'")
        for tier in ("yellow", "red"):
            if isinstance(t[tier], bool) or not isinstance(t[tier], (int, float)):
                raise ConfigError(file, f"{key}.{tier}", f"must be a number, got {t[tier]!r}")
        if not t["yellow"] < t["red"]:
            raise ConfigError(file, key, f"yellow ({t['yellow']}) must be below red ({t['red']})")
        thresholds[param] = Thresholds(float(t["yellow"]), float(t["red"]))
    return TierRules(rule_id, version, min_minutes, thresholds)


def load_tier_rules(path: str | Path) -> TierRules:
    return parse_tier_rules(read_yaml(path), Path(path))
