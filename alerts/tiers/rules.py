"""Tier rules per region as validated, versioned configuration (config/tier_rules.yaml).

A rule set has a `rule_set_id` and a `version`; every transition names both, so
an alert can always be traced to the rules that produced it. The same document
can arrive as a Kafka message body (parse_rules) or be read from a file
(load_rules); errors are ConfigError(file, key, reason) in both cases.

Layout: `regions.<region>.<kind>` for kind in air / water / health, with an
optional `regions.default`. A region's kind block is merged key by key over the
default's (a key present in the region replaces the default's value whole);
`<kind>: null` switches the kind off for that region. Every region of the
network must end up with rules (its own or the default's).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from schemas.errors import ConfigError, read_yaml
from schemas.models import Tier
from schemas.network import Network
from schemas.parameters import PARAMETERS

TIER_RANK: dict[Tier, int] = {"green": 0, "yellow": 1, "red": 2}
ALERT_TIERS: tuple[Tier, ...] = ("yellow", "red")  # configurable tiers, ascending; green is "no alert"
DEFAULT = "default"
RULE_SET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# GB 3838-2002 classes as numbers; 6 is "worse than V" (劣V).
CLASS_NAMES: dict[int, str] = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "worse_than_V"}
_CLASS_ALIASES: dict[str, int] = {**{v: k for k, v in CLASS_NAMES.items()}, "劣V": 6, "V+": 6}

# HJ 633-2012 AQI categories by the lowest AQI of each (STANDARDS.md); AQI is an integer,
# so "AQI in category X or worse" is AQI > lowest(X) - 1.
AQI_CATEGORY_LOW: dict[str, int] = {"excellent": 0, "good": 51, "light": 101, "moderate": 151, "heavy": 201, "severe": 301}

RiseMode = Literal["absolute", "relative"]


@dataclass(frozen=True)
class Persistence:
    """How long a condition must hold before it counts: consecutive valid observations
    and/or event time covered (first window's start to the latest window's end)."""

    observations: int = 1
    duration_ms: int = 0

    def met(self, count: int, span_ms: int) -> bool:
        return count >= self.observations and span_ms >= self.duration_ms

    def describe(self) -> str:
        parts = [f"{self.observations} obs"] if self.observations > 1 else []
        if self.duration_ms:
            parts.append(f"{self.duration_ms // 60000} min")
        return " and ".join(parts) or "immediately"


@dataclass(frozen=True)
class Band:
    """One tier of a threshold rule: enter when value > enter_above (held for `persistence`),
    leave when value < exit_below (exit_below < enter_above: the hysteresis band)."""

    tier: Tier
    enter_above: float
    exit_below: float
    persistence: Persistence


@dataclass(frozen=True)
class Hold:
    """What every rule has: dwell before lowering a tier, and persistence of the lowering condition."""

    min_dwell_ms: int = 0
    exit_persistence: Persistence = Persistence()


@dataclass(frozen=True)
class RegionLevel:
    """A region is in a tier when at least `quota(n)` of its n stations are in it (or above)."""

    min_stations: int | None
    min_fraction: float | None
    persistence: Persistence
    hold: Hold

    def quota(self, n_stations: int) -> int:
        # both given: the stricter applies; never below one station
        k = self.min_stations or 0
        f = math.ceil(self.min_fraction * n_stations - 1e-9) if self.min_fraction is not None else 0
        return max(1, k, f)


@dataclass(frozen=True)
class AirRule:
    indicator: str  # the index observations carry, e.g. "aqi"
    bands: tuple[Band, ...]
    hold: Hold
    region_level: RegionLevel | None


@dataclass(frozen=True)
class ClassBand:
    """Water class tier: class worse than the target by >= worse_by, or at/after or_class."""

    tier: Tier
    worse_by: int
    or_class: int | None
    persistence: Persistence


@dataclass(frozen=True)
class JumpRule:
    """Acute rise of a parameter over the lowest value of the trailing window."""

    parameter: str
    window_ms: int
    rise: RiseMode
    bands: tuple[Band, ...]
    hold: Hold


@dataclass(frozen=True)
class WaterRule:
    target_class: int
    station_targets: Mapping[str, int]
    class_bands: tuple[ClassBand, ...]
    hold: Hold
    jumps: Mapping[str, JumpRule]
    region_level: RegionLevel | None

    def target_for(self, station: str) -> int:
        return self.station_targets.get(station, self.target_class)

    def class_limit(self, band: ClassBand, station: str) -> int:
        """The lowest (best) class number that puts `station` into `band`'s tier."""
        limit = self.target_for(station) + band.worse_by
        return min(limit, band.or_class) if band.or_class is not None else limit


@dataclass(frozen=True)
class HealthRule:
    """No valid data for silent_ms, then pending_ms more (short hiccups resolve within it) -> tier."""

    silent_ms: int
    pending_ms: int
    tier: Tier
    hold: Hold
    region_level: RegionLevel | None


@dataclass(frozen=True)
class RegionRules:
    region: str
    air: AirRule | None
    water: WaterRule | None
    health: HealthRule | None


@dataclass(frozen=True)
class RuleSet:
    rule_set_id: str
    version: int
    regions: Mapping[str, RegionRules]  # effective rules of every network region
    default: RegionRules | None  # for regions the network did not know when the rules were parsed
    source: str = field(default="", compare=False)

    def for_region(self, region: str) -> RegionRules | None:
        return self.regions.get(region, self.default)

    def rule_id(self, region: str, kind: str, indicator: str, scope: str = "station") -> str:
        suffix = "/region" if scope == "region" else ""
        return f"{self.rule_set_id}/{region}/{kind}/{indicator}{suffix}"


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Ctx:
    file: str
    network: Network

    def fail(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.file, key, reason)


def load_rules(path: str | Path, network: Network) -> RuleSet:
    """Read and validate a tier rules file."""
    return parse_rules(read_yaml(path), network, str(path))


def parse_rules(doc: Any, network: Network, source: str = "<message>") -> RuleSet:
    """Validate a rules document (a parsed YAML file or a Kafka message body)."""
    ctx = _Ctx(source, network)
    if not isinstance(doc, dict):
        raise ctx.fail("<root>", "must be a mapping with 'version', 'rule_set_id' and 'regions'")
    _no_unknown(doc, {"version", "rule_set_id", "regions", "description"}, "", ctx)
    version = doc.get("version")
    if not _is_int(version) or version < 1:
        raise ctx.fail("version", f"must be a positive integer, got {version!r}")
    rule_set_id = doc.get("rule_set_id")
    if not isinstance(rule_set_id, str) or not RULE_SET_ID.match(rule_set_id):
        raise ctx.fail("rule_set_id", f"must be a string matching {RULE_SET_ID.pattern}, got {rule_set_id!r}")
    raw = doc.get("regions")
    if not isinstance(raw, dict) or not raw:
        raise ctx.fail("regions", "must map region id (or 'default') -> rules")
    for name, block in raw.items():
        if name != DEFAULT and name not in network.regions:
            raise ctx.fail(f"regions.{name}", f"unknown region (known: {sorted(network.regions)}, or '{DEFAULT}')")
        if block is not None and not isinstance(block, dict):
            raise ctx.fail(f"regions.{name}", "must be a mapping of kind -> rules")
        _no_unknown(block or {}, {"air", "water", "health"}, f"regions.{name}", ctx)
    default_raw: dict[str, Any] | None = raw.get(DEFAULT) or ({} if DEFAULT in raw else None)
    default = _region_rules(DEFAULT, default_raw, None, ctx) if default_raw is not None else None
    regions: dict[str, RegionRules] = {}
    for region in network.regions:
        if region not in raw and default is None:
            raise ctx.fail(f"regions.{region}", f"no rules for this region and no '{DEFAULT}' section")
        regions[region] = _region_rules(region, raw.get(region) or {}, default_raw, ctx)
    return RuleSet(rule_set_id, version, regions, default, source)


def _region_rules(region: str, own: dict[str, Any], default: dict[str, Any] | None, ctx: _Ctx) -> RegionRules:
    path = f"regions.{region}"
    blocks: dict[str, tuple[dict[str, Any] | None, set[str]]] = {}
    for kind in ("air", "water", "health"):
        base = (default or {}).get(kind)
        if kind in own and own[kind] is None:
            blocks[kind] = (None, set())  # switched off for this region
        elif kind in own:
            if not isinstance(own[kind], dict):
                raise ctx.fail(f"{path}.{kind}", "must be a mapping (or null to switch the kind off)")
            # own keys override the default's whole; remember which are own (for membership checks)
            blocks[kind] = ({**(base or {}), **own[kind]}, set(own[kind]))
        elif base is not None:
            if not isinstance(base, dict):
                raise ctx.fail(f"regions.{DEFAULT}.{kind}", "must be a mapping (or null to switch the kind off)")
            blocks[kind] = (base, set())
        else:
            blocks[kind] = (None, set())
    air, own_air = blocks["air"]
    water, own_water = blocks["water"]
    health, _ = blocks["health"]
    member_of = region if region != DEFAULT and "station_targets" in own_water else None
    return RegionRules(
        region,
        _air(air, f"{path}.air", ctx) if air is not None else None,
        _water(water, f"{path}.water", ctx, member_of) if water is not None else None,
        _health(health, f"{path}.health", ctx) if health is not None else None,
    )


def _air(doc: dict[str, Any], path: str, ctx: _Ctx) -> AirRule:
    _no_unknown(doc, {"indicator", "tiers", "persistence", "min_dwell_minutes", "exit_persistence", "region_level"}, path, ctx)
    indicator = doc.get("indicator", "aqi")
    if not isinstance(indicator, str) or not indicator:
        raise ctx.fail(f"{path}.indicator", f"must be a non-empty string, got {indicator!r}")
    persistence = _persistence(doc.get("persistence"), f"{path}.persistence", ctx)
    bands = _bands(doc.get("tiers"), f"{path}.tiers", persistence, ctx, categories=True)
    return AirRule(indicator, bands, _hold(doc, path, ctx), _region_level(doc.get("region_level"), f"{path}.region_level", ctx))


def _water(doc: dict[str, Any], path: str, ctx: _Ctx, member_of: str | None) -> WaterRule:
    allowed = {"target_class", "station_targets", "tiers", "persistence", "min_dwell_minutes", "exit_persistence", "jumps", "region_level"}
    _no_unknown(doc, allowed, path, ctx)
    if "target_class" not in doc:
        raise ctx.fail(f"{path}.target_class", "is required (the section's target class, I..V)")
    target = _class(doc["target_class"], f"{path}.target_class", ctx)
    if target == 6:
        raise ctx.fail(f"{path}.target_class", "a target class must be I..V")
    targets: dict[str, int] = {}
    raw_targets = doc.get("station_targets") or {}
    if not isinstance(raw_targets, dict):
        raise ctx.fail(f"{path}.station_targets", "must map station id -> class")
    for station, cls in raw_targets.items():
        key = f"{path}.station_targets.{station}"
        s = ctx.network.stations.get(station)
        if s is None:
            raise ctx.fail(key, "unknown station")
        if s.medium != "water":
            raise ctx.fail(key, f"is an {s.medium} station, not a water section")
        if member_of is not None and s.region != member_of:
            raise ctx.fail(key, f"station is in region {s.region!r}, not {member_of!r}")
        targets[station] = _class(cls, key, ctx)
        if targets[station] == 6:
            raise ctx.fail(key, "a target class must be I..V")
    persistence = _persistence(doc.get("persistence"), f"{path}.persistence", ctx)
    raw_tiers = _tier_map(doc.get("tiers"), f"{path}.tiers", ctx)
    bands: list[ClassBand] = []
    for tier, t in raw_tiers.items():
        key = f"{path}.tiers.{tier}"
        _no_unknown(t, {"worse_by", "or_class", "persistence"}, key, ctx)
        worse_by = t.get("worse_by")
        if not _is_int(worse_by) or worse_by < 1:
            raise ctx.fail(f"{key}.worse_by", f"must be an integer >= 1 (classes worse than the target), got {worse_by!r}")
        or_class = _class(t["or_class"], f"{key}.or_class", ctx) if t.get("or_class") is not None else None
        bands.append(ClassBand(tier, worse_by, or_class, _persistence(t.get("persistence"), f"{key}.persistence", ctx, persistence)))
    for lo, hi in zip(bands, bands[1:]):
        if not hi.worse_by > lo.worse_by:
            raise ctx.fail(f"{path}.tiers.{hi.tier}.worse_by", f"must be above {lo.tier}'s ({lo.worse_by})")
        if lo.or_class is not None and (hi.or_class is None or hi.or_class < lo.or_class):
            raise ctx.fail(f"{path}.tiers.{hi.tier}.or_class", f"must be set and not better than {lo.tier}'s ({CLASS_NAMES[lo.or_class]})")
    jumps_raw = doc.get("jumps") or {}
    if not isinstance(jumps_raw, dict):
        raise ctx.fail(f"{path}.jumps", "must map water parameter -> jump rule")
    jumps = {p: _jump(p, j, f"{path}.jumps.{p}", ctx) for p, j in jumps_raw.items()}
    return WaterRule(target, targets, tuple(bands), _hold(doc, path, ctx), jumps, _region_level(doc.get("region_level"), f"{path}.region_level", ctx))


def _jump(parameter: str, doc: Any, path: str, ctx: _Ctx) -> JumpRule:
    p = PARAMETERS.get(parameter)
    if p is None or p.medium != "water":
        raise ctx.fail(path, f"unknown water parameter (known: {sorted(k for k, v in PARAMETERS.items() if v.medium == 'water')})")
    if not isinstance(doc, dict):
        raise ctx.fail(path, "must be a mapping with window_minutes, rise and tiers")
    _no_unknown(doc, {"window_minutes", "rise", "tiers", "persistence", "min_dwell_minutes", "exit_persistence"}, path, ctx)
    window = _minutes(doc, "window_minutes", path, ctx, required=True, positive=True)
    rise = doc.get("rise")
    if rise not in ("absolute", "relative"):
        raise ctx.fail(f"{path}.rise", f"must be 'absolute' (in {p.unit}) or 'relative' (fraction of the window's lowest value), got {rise!r}")
    persistence = _persistence(doc.get("persistence"), f"{path}.persistence", ctx)
    bands = _bands(doc.get("tiers"), f"{path}.tiers", persistence, ctx, categories=False)
    for b in bands:
        if b.exit_below < 0:
            raise ctx.fail(f"{path}.tiers.{b.tier}.exit_below", "a rise threshold must not be negative")
    return JumpRule(parameter, window, rise, bands, _hold(doc, path, ctx))


def _health(doc: dict[str, Any], path: str, ctx: _Ctx) -> HealthRule:
    _no_unknown(doc, {"silent_minutes", "pending_minutes", "tier", "min_dwell_minutes", "exit_persistence", "region_level"}, path, ctx)
    silent = _minutes(doc, "silent_minutes", path, ctx, required=True, positive=True)
    pending = _minutes(doc, "pending_minutes", path, ctx)
    tier = doc.get("tier", "yellow")
    if tier not in ALERT_TIERS:
        raise ctx.fail(f"{path}.tier", f"unknown tier {tier!r} (one of {list(ALERT_TIERS)})")
    return HealthRule(silent, pending, tier, _hold(doc, path, ctx), _region_level(doc.get("region_level"), f"{path}.region_level", ctx))


def _region_level(doc: Any, path: str, ctx: _Ctx) -> RegionLevel | None:
    if doc is None:
        return None
    if not isinstance(doc, dict):
        raise ctx.fail(path, "must be a mapping with min_stations and/or min_fraction")
    _no_unknown(doc, {"min_stations", "min_fraction", "persistence", "min_dwell_minutes", "exit_persistence"}, path, ctx)
    k, f = doc.get("min_stations"), doc.get("min_fraction")
    if k is None and f is None:
        raise ctx.fail(path, "needs min_stations and/or min_fraction")
    if k is not None and (not _is_int(k) or k < 1):
        raise ctx.fail(f"{path}.min_stations", f"must be an integer >= 1, got {k!r}")
    if f is not None and (not _is_num(f) or not 0 < f <= 1):
        raise ctx.fail(f"{path}.min_fraction", f"must be a number in (0, 1], got {f!r}")
    return RegionLevel(k, None if f is None else float(f), _persistence(doc.get("persistence"), f"{path}.persistence", ctx), _hold(doc, path, ctx))


def _bands(doc: Any, path: str, persistence: Persistence, ctx: _Ctx, *, categories: bool) -> tuple[Band, ...]:
    bands: list[Band] = []
    for tier, t in _tier_map(doc, path, ctx).items():
        key = f"{path}.{tier}"
        allowed = {"enter_above", "exit_below", "persistence"} | ({"enter_category", "exit_below_category"} if categories else set())
        _no_unknown(t, allowed, key, ctx)
        enter = _threshold(t, "enter_above", "enter_category", key, ctx, lambda low: low - 1)
        exit_ = _threshold(t, "exit_below", "exit_below_category", key, ctx, lambda low: low)
        if not exit_ < enter:
            raise ctx.fail(f"{key}.exit_below", f"exit threshold ({exit_:g}) must be below the enter threshold ({enter:g})")
        bands.append(Band(tier, enter, exit_, _persistence(t.get("persistence"), f"{key}.persistence", ctx, persistence)))
    for lo, hi in zip(bands, bands[1:]):
        if not hi.enter_above > lo.enter_above:
            raise ctx.fail(f"{path}.{hi.tier}.enter_above", f"must be above {lo.tier}'s ({lo.enter_above:g})")
        if not hi.exit_below > lo.exit_below:
            raise ctx.fail(f"{path}.{hi.tier}.exit_below", f"must be above {lo.tier}'s ({lo.exit_below:g})")
    return tuple(bands)


def _threshold(t: dict[str, Any], num_key: str, cat_key: str, path: str, ctx: _Ctx, from_low: Any) -> float:
    if num_key in t and cat_key in t:
        raise ctx.fail(f"{path}.{cat_key}", f"give {num_key} or {cat_key}, not both")
    if cat_key in t:
        cat = t[cat_key]
        if cat not in AQI_CATEGORY_LOW:
            raise ctx.fail(f"{path}.{cat_key}", f"unknown AQI category {cat!r} (one of {list(AQI_CATEGORY_LOW)})")
        return float(from_low(AQI_CATEGORY_LOW[cat]))
    if num_key not in t:
        raise ctx.fail(f"{path}.{num_key}", "is required")
    if not _is_num(t[num_key]):
        raise ctx.fail(f"{path}.{num_key}", f"must be a number, got {t[num_key]!r}")
    return float(t[num_key])


def _tier_map(doc: Any, path: str, ctx: _Ctx) -> dict[Tier, dict[str, Any]]:
    if not isinstance(doc, dict) or not doc:
        raise ctx.fail(path, f"must map tier ({' / '.join(ALERT_TIERS)}) -> thresholds")
    for tier, t in doc.items():
        if tier not in ALERT_TIERS:
            raise ctx.fail(f"{path}.{tier}", f"unknown tier (one of {list(ALERT_TIERS)}; green is the absence of an alert)")
        if not isinstance(t, dict):
            raise ctx.fail(f"{path}.{tier}", "must be a mapping")
    return {tier: doc[tier] for tier in ALERT_TIERS if tier in doc}  # ascending, whatever the file order


def _hold(doc: dict[str, Any], path: str, ctx: _Ctx) -> Hold:
    return Hold(_minutes(doc, "min_dwell_minutes", path, ctx), _persistence(doc.get("exit_persistence"), f"{path}.exit_persistence", ctx))


def _persistence(doc: Any, path: str, ctx: _Ctx, default: Persistence = Persistence()) -> Persistence:
    if doc is None:
        return default
    if not isinstance(doc, dict) or not doc:
        raise ctx.fail(path, "must be a mapping with observations and/or minutes")
    _no_unknown(doc, {"observations", "minutes"}, path, ctx)
    n = doc.get("observations", 1)
    if not _is_int(n) or n < 1:
        raise ctx.fail(f"{path}.observations", f"must be an integer >= 1, got {n!r}")
    return Persistence(n, _minutes(doc, "minutes", path, ctx))


def _minutes(doc: dict[str, Any], key: str, path: str, ctx: _Ctx, *, required: bool = False, positive: bool = False) -> int:
    """A duration in minutes from the file, as event-time milliseconds."""
    if key not in doc:
        if required:
            raise ctx.fail(f"{path}.{key}", "is required")
        return 0
    v = doc[key]
    if not _is_num(v):
        raise ctx.fail(f"{path}.{key}", f"must be a number of minutes, got {v!r}")
    if v < 0 or (positive and v == 0):
        raise ctx.fail(f"{path}.{key}", f"must be {'positive' if positive else 'non-negative'}, got {v!r}")
    return round(v * 60_000)


def _class(v: Any, key: str, ctx: _Ctx) -> int:
    if _is_int(v) and 1 <= v <= 6:
        return int(v)
    if isinstance(v, str) and v in _CLASS_ALIASES:
        return _CLASS_ALIASES[v]
    raise ctx.fail(key, f"unknown water class {v!r} (I, II, III, IV, V, worse_than_V or 1..6)")


def _no_unknown(doc: dict[str, Any], allowed: set[str], path: str, ctx: _Ctx) -> None:
    for key in doc:
        if key not in allowed:
            raise ctx.fail(f"{path}.{key}" if path else str(key), f"unknown key (allowed: {sorted(allowed)})")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
