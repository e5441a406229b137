"""Per-kind measures: turn one observation (and the key's memory) into, per tier,
"enters" (above the enter threshold) and "holds" (not below the exit threshold).

The state machine (state_machine.py) then applies persistence and dwell the same
way for every kind; this module is where air, water, health and region differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.tiers.model import CLASS_INDICATOR, HEALTH_INDICATOR, KeyState, Observation
from alerts.tiers.rules import (
    ALERT_TIERS,
    CLASS_NAMES,
    TIER_RANK,
    AirRule,
    Band,
    HealthRule,
    Hold,
    JumpRule,
    Persistence,
    RegionLevel,
    RuleSet,
    WaterRule,
)
from schemas.models import Tier


@dataclass(frozen=True)
class Level:
    tier: Tier
    enters: bool
    holds: bool
    value: float
    enter_threshold: float
    exit_threshold: float
    persistence: Persistence
    enter_text: str
    exit_text: str


@dataclass(frozen=True)
class Evaluation:
    valid: bool  # False: insufficient data, the observation only breaks runs
    levels: tuple[Level, ...] = ()  # configured tiers, ascending
    contiguous: bool = True  # a gap between windows breaks persistence runs
    patch: Mapping[str, Any] = field(default_factory=dict)  # KeyState fields this kind remembers

    def level(self, tier: Tier) -> Level | None:
        return next((lv for lv in self.levels if lv.tier == tier), None)


Evaluate = Callable[[Observation, KeyState], Evaluation]


@dataclass(frozen=True)
class Spec:
    rule_id: str
    hold: Hold
    evaluate: Evaluate


def resolve(rules: RuleSet, obs: Observation) -> Spec | None:
    """The rule that governs this observation's key, or None when the rules have none."""
    rr = rules.for_region(obs.region)
    if rr is None:
        return None
    block = {"air": rr.air, "water": rr.water, "health": rr.health}.get(obs.kind)
    if block is None:
        return None
    rule_id = rules.rule_id(obs.region, obs.kind, obs.indicator, obs.scope)
    if obs.scope == "region":
        rl = block.region_level
        return Spec(rule_id, rl.hold, lambda o, s: _region(rl, o)) if rl else None
    if isinstance(block, AirRule) and obs.indicator == block.indicator:
        return Spec(rule_id, block.hold, lambda o, s: _bands(block.bands, block.indicator, o.value))
    if isinstance(block, WaterRule) and obs.indicator == CLASS_INDICATOR:
        return Spec(rule_id, block.hold, lambda o, s: _water_class(block, o))
    if isinstance(block, WaterRule) and obs.indicator in block.jumps:
        jump = block.jumps[obs.indicator]
        return Spec(rule_id, jump.hold, lambda o, s: _jump(jump, o, s))
    if isinstance(block, HealthRule) and obs.indicator == HEALTH_INDICATOR:
        return Spec(rule_id, block.hold, lambda o, s: _health(block, o, s))
    return None


def _bands(bands: tuple[Band, ...], measure: str, value: float | None, patch: Mapping[str, Any] | None = None) -> Evaluation:
    if value is None:
        return Evaluation(False, patch=patch or {})
    return Evaluation(True, tuple(
        Level(b.tier, value > b.enter_above, value >= b.exit_below, value, b.enter_above, b.exit_below, b.persistence,
              f"{measure} {value:g} > {b.enter_above:g}", f"{measure} {value:g} < {b.exit_below:g}")
        for b in bands
    ), patch=patch or {})


def _water_class(rule: WaterRule, obs: Observation) -> Evaluation:
    if obs.value is None:
        return Evaluation(False)
    c = obs.value
    if c != int(c) or c not in CLASS_NAMES:
        raise ValueError(f"{obs.key}: water class must be 1..6 (6 = worse than V), got {c!r}")
    c = int(c)
    target = rule.target_for(obs.subject)
    levels = []
    for b in rule.class_bands:
        k = rule.class_limit(b, obs.subject)
        # classes are whole numbers: no hysteresis band, persistence and dwell keep it steady
        levels.append(Level(b.tier, c >= k, c >= k, float(c), float(k), float(k), b.persistence,
                            f"class {CLASS_NAMES[c]} at or worse than {CLASS_NAMES.get(k, k)} (target {CLASS_NAMES[target]})",
                            f"class {CLASS_NAMES[c]} better than {CLASS_NAMES.get(k, k)} (target {CLASS_NAMES[target]})"))
    return Evaluation(True, tuple(levels))


def _jump(rule: JumpRule, obs: Observation, state: KeyState) -> Evaluation:
    end = obs.window_end
    window = tuple((t, v) for t, v in state.recent if end - rule.window_ms <= t < end)
    recent = window + ((end, obs.value),) if obs.value is not None else window
    patch = {"recent": recent}
    if obs.value is None or not window:
        return Evaluation(False, patch=patch)  # no baseline yet: nothing to rise from
    base = min(v for _, v in window)
    if rule.rise == "absolute":
        return _bands(rule.bands, f"{rule.parameter} rise {obs.value:g}-{base:g} =", obs.value - base, patch)
    if base <= 0:
        return Evaluation(False, patch=patch)  # a relative rise over zero is undefined
    return _bands(rule.bands, f"{rule.parameter} relative rise ({obs.value:g}-{base:g})/{base:g} =", (obs.value - base) / base, patch)


def _health(rule: HealthRule, obs: Observation, state: KeyState) -> Evaluation:
    first = state.first_seen if state.first_seen is not None else obs.window_start
    last = state.last_valid_end
    if obs.value is not None:
        last = obs.window_end if last is None else max(last, obs.window_end)
    silent_min = (obs.window_end - (last if last is not None else first)) / 60_000
    enter_min, exit_min = (rule.silent_ms + rule.pending_ms) / 60_000, rule.silent_ms / 60_000
    level = Level(rule.tier, silent_min >= enter_min, silent_min >= exit_min, silent_min, enter_min, exit_min, Persistence(),
                  f"no valid data for {silent_min:g} min >= {exit_min:g} silent + {rule.pending_ms / 60_000:g} pending",
                  f"data again ({silent_min:g} min silent < {exit_min:g})")
    # health is about the gaps themselves: never "insufficient", never broken by a gap
    return Evaluation(True, (level,), contiguous=False, patch={"first_seen": first, "last_valid_end": last})


def _region(rule: RegionLevel, obs: Observation) -> Evaluation:
    tiers: Mapping[str, Tier] = obs.inputs["station_tiers"]
    n = int(obs.inputs.get("n_stations", len(tiers)))
    q = rule.quota(n)
    levels = []
    for tier in ALERT_TIERS:
        count = sum(TIER_RANK[t] >= TIER_RANK[tier] for t in tiers.values())
        levels.append(Level(tier, count >= q, count >= q, float(count), float(q), float(q), rule.persistence,
                            f"{count} of {n} stations at {tier} or worse >= {q}",
                            f"{count} of {n} stations at {tier} or worse < {q}"))
    return Evaluation(True, tuple(levels), contiguous=False)
