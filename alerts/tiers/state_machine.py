"""The tiered alert state machine: pure and deterministic, driven by event time only.

Per key (station or region, kind, indicator), observations arrive in event-time
order and move the tier green / yellow / red:

- up (raise, escalate): as soon as some higher tier's enter condition has held for
  that tier's persistence (consecutive valid observations and/or event time
  covered); the highest such tier wins, so green may go straight to red.
- down (de-escalate, clear): when the current tier's exit condition (below its
  exit threshold) has held for `exit_persistence` AND the tier has been held for
  `min_dwell`; the new tier is the highest lower tier still holding, else green.
- "insufficient data" (value None) neither raises nor lowers; it breaks runs, as
  does a gap between windows (for station air/water keys), because persistence
  means *consecutive* valid windows.
- an observation not newer than the last one of its key is ignored (replays,
  duplicates); health keys also take several observations at the same time.
- a new rule set or version applies from the next observation on; it restarts the
  runs (they were counted against the old thresholds) but keeps tier and dwell.
- who leads (origin_region) and assists comes from `apportion`; when it names another
  lead for an open episode, a 'reattribute' transition (same tier) says so, and the
  episode stays with that lead until it clears (see _attribution).

Region keys see the current tiers of a region's stations (step_region); run()
evaluates them once per event time, after every station at that time was stepped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, NamedTuple

from alerts.tiers.evaluation import Evaluation, Spec, resolve
from alerts.tiers.model import HEALTH_INDICATOR, Action, Key, KeyState, MachineState, Observation, Run, Transition
from alerts.tiers.rules import TIER_RANK, RuleSet
from schemas.models import Tier
from schemas.network import Network

# (origin_region, affected_regions[, basis]) of an observation: alerts.attribution names the
# origin from the apportionment stream; `basis` (why, or None) goes into the alert's inputs.
Apportion = Callable[[Observation], tuple[Any, ...]]


class Assignment(NamedTuple):
    origin_region: str
    affected_regions: tuple[str, ...]
    basis: Mapping[str, Any] | None = None


def own_region(obs: Observation) -> tuple[str, tuple[str, ...]]:
    """Until apportionment says otherwise, the station's own region leads and nobody assists."""
    return obs.region, ()


def alert_id(key: Key, tier: Tier, window_end: int, rule_set_id: str, rule_version: int) -> str:
    """Same key, tier, causing window and rules => same id, so reprocessing never double-alerts."""
    canonical = json.dumps([str(key), tier, window_end, rule_set_id, rule_version], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def step(state: KeyState | None, obs: Observation, rules: RuleSet, *, apportion: Apportion = own_region) -> tuple[KeyState, list[Transition]]:
    """Consume one observation of one key; returns the key's new state and its transitions (0 or 1)."""
    ks = state if state is not None else KeyState(obs.key)
    if ks.key != obs.key:
        raise ValueError(f"state of {ks.key} given an observation of {obs.key}")
    last = ks.last_window_end
    if last is not None and (obs.window_end < last or (obs.window_end == last and obs.indicator != HEALTH_INDICATOR)):
        return ks, []
    spec = resolve(rules, obs)
    if spec is None:
        new, ts = _no_rule(ks, obs, rules, apportion)
    else:
        new, ts = _advance(ks, obs, spec, spec.evaluate(obs, ks), rules, apportion)
        if not ts and new.tier != "green":
            ts = _reattribution(new, obs, spec.rule_id, rules, apportion)
    if ts:
        new = replace(new, origin_region=None if new.tier == "green" else ts[-1].origin_region)
    return new, ts


def step_region(
    state: KeyState | None,
    region: str,
    kind: str,
    indicator: str,
    station_tiers: Mapping[str, Tier],
    window_start: int,
    window_end: int,
    rules: RuleSet,
    *,
    n_stations: int | None = None,
    apportion: Apportion = own_region,
) -> tuple[KeyState, list[Transition]]:
    """Region-level machine: the region is in a tier while >= quota of its stations are in it
    (or above). station_tiers should list every station of the region for this kind (green too);
    n_stations (default: len(station_tiers)) is what min_fraction is a fraction of."""
    obs = Observation(
        subject=region, region=region, kind=kind, indicator=indicator,
        window_start=window_start, window_end=window_end,
        value=float(sum(t != "green" for t in station_tiers.values())),
        inputs={"station_tiers": dict(sorted(station_tiers.items())), "n_stations": n_stations if n_stations is not None else len(station_tiers)},
        scope="region",
    )
    return step(state, obs, rules, apportion=apportion)


def run(
    events: Iterable[Observation | RuleSet],
    rules: RuleSet,
    state: MachineState | None = None,
    *,
    network: Network | None = None,
    apportion: Apportion = own_region,
    final: bool = True,
) -> tuple[MachineState, list[Transition]]:
    """Step a stream of observations (any keys, event-time order). A RuleSet in the stream
    replaces the rules from the next observation on. With `network`, region-level keys are
    evaluated once per event time, when time moves past it (and at the end if `final`;
    pass final=False for all but the last chunk of a stream processed in pieces)."""
    keys = dict(state.keys) if state else {}
    pending_at = state.pending_at if state else None
    pending = {(r, k, i): w for r, k, i, w in (state.pending if state else ())}
    out: list[Transition] = []

    def flush() -> None:
        nonlocal pending_at
        assert network is not None and pending_at is not None
        for (region, kind, indicator), ws in sorted(pending.items()):
            stations = [s.id for s in network.stations.values() if s.region == region and (kind == "health" or s.medium == kind)]
            tiers = {s: _tier(keys, Key("station", s, kind, indicator)) for s in stations}
            rkey = str(Key("region", region, kind, indicator))
            keys[rkey], ts = step_region(keys.get(rkey), region, kind, indicator, tiers, ws, pending_at, rules, apportion=apportion)
            out.extend(ts)
        pending.clear()
        pending_at = None

    for event in events:
        if isinstance(event, RuleSet):
            rules = event
            continue
        if network is not None and pending_at is not None and event.window_end > pending_at:
            flush()
        k = str(event.key)
        before = keys.get(k)
        keys[k], ts = step(before, event, rules, apportion=apportion)
        out.extend(ts)
        if network is not None and event.scope == "station" and keys[k] is not before and _has_region_level(rules, event):
            group = (event.region, event.kind, event.indicator)
            pending[group] = min(pending.get(group, event.window_start), event.window_start)
            pending_at = event.window_end if pending_at is None else max(pending_at, event.window_end)
    if final and network is not None and pending_at is not None:
        flush()
    pend = tuple((r, k, i, w) for (r, k, i), w in sorted(pending.items()))
    return MachineState(keys, pending_at, pend), out


def _tier(keys: Mapping[str, KeyState], key: Key) -> Tier:
    ks = keys.get(str(key))
    return ks.tier if ks else "green"


def _has_region_level(rules: RuleSet, obs: Observation) -> bool:
    rr = rules.for_region(obs.region)
    block = {"air": rr.air, "water": rr.water, "health": rr.health}.get(obs.kind) if rr else None
    return block is not None and block.region_level is not None and resolve(rules, obs) is not None


def _advance(ks: KeyState, obs: Observation, spec: Spec, ev: Evaluation, rules: RuleSet, apportion: Apportion) -> tuple[KeyState, list[Transition]]:
    ref = (rules.rule_set_id, rules.version)
    gap = ev.contiguous and ks.last_window_end is not None and obs.window_start > ks.last_window_end
    fresh = ks.rules_ref != ref or gap
    ups: dict[Tier, Run] = {} if fresh else dict(ks.up_runs)
    down = None if fresh else ks.down_run
    last_end = obs.window_end if ks.last_window_end is None else max(ks.last_window_end, obs.window_end)
    base = replace(ks, last_window_end=last_end, rules_ref=ref, **ev.patch)
    if not ev.valid:
        return replace(base, up_runs=(), down_run=None), []

    for lv in ev.levels:
        run_ = ups.get(lv.tier)
        if lv.enters:
            ups[lv.tier] = run_.extended(obs.window_end) if run_ else Run(obs.window_start, obs.window_end, 1)
        else:
            ups.pop(lv.tier, None)
    up_runs = tuple((t, ups[t]) for t in sorted(ups, key=TIER_RANK.__getitem__))

    cur = ks.tier
    ready = [lv for lv in ev.levels if TIER_RANK[lv.tier] > TIER_RANK[cur] and lv.tier in ups
             and lv.persistence.met(ups[lv.tier].count, ups[lv.tier].span_ms)]
    if ready:
        lv = ready[-1]
        r = ups[lv.tier]
        held = f" for {r.count} obs / {r.span_ms // 60000} min" if (lv.persistence.observations > 1 or lv.persistence.duration_ms) else ""
        action: Action = "raise" if cur == "green" else "escalate"
        t = _transition(ks, obs, spec.rule_id, rules, apportion, action, lv.tier, lv.value, lv.enter_threshold, lv.enter_text + held, r.start)
        return replace(base, tier=lv.tier, tier_since=obs.window_end, episode_id=t.episode_id, up_runs=up_runs, down_run=None), [t]

    if cur == "green":
        return replace(base, up_runs=up_runs, down_run=None), []
    current = ev.level(cur)
    if current is not None and current.holds:
        return replace(base, up_runs=up_runs, down_run=None), []
    down = down.extended(obs.window_end) if down else Run(obs.window_start, obs.window_end, 1)
    dwell = obs.window_end - (ks.tier_since if ks.tier_since is not None else obs.window_end)
    if not (spec.hold.exit_persistence.met(down.count, down.span_ms) and dwell >= spec.hold.min_dwell_ms):
        return replace(base, up_runs=up_runs, down_run=down), []
    lower = [lv for lv in ev.levels if TIER_RANK[lv.tier] < TIER_RANK[cur] and lv.holds]
    new: Tier = lower[-1].tier if lower else "green"
    text = current.exit_text if current else f"tier {cur} not in rule {spec.rule_id} v{rules.version}"
    reason = f"{text}; {dwell // 60000} min at {cur}"
    value, threshold = (current.value, current.exit_threshold) if current else (obs.value, None)
    t = _transition(ks, obs, spec.rule_id, rules, apportion, "clear" if new == "green" else "deescalate", new, value, threshold, reason, down.start)
    new_state = replace(base, tier=new, tier_since=obs.window_end, episode_id=None if new == "green" else ks.episode_id, up_runs=up_runs, down_run=None)
    return new_state, [t]


def _no_rule(ks: KeyState, obs: Observation, rules: RuleSet, apportion: Apportion) -> tuple[KeyState, list[Transition]]:
    """The rules no longer cover this key: an open alert is cleared at once (there is nothing to hold it)."""
    last_end = obs.window_end if ks.last_window_end is None else max(ks.last_window_end, obs.window_end)
    base = replace(ks, last_window_end=last_end, rules_ref=(rules.rule_set_id, rules.version), up_runs=(), down_run=None)
    if ks.tier == "green":
        return base, []
    rule_id = rules.rule_id(obs.region, obs.kind, obs.indicator, obs.scope)
    reason = f"no rule for {ks.key} in rule set {rules.rule_set_id} v{rules.version}"
    t = _transition(ks, obs, rule_id, rules, apportion, "clear", "green", obs.value, None, reason, obs.window_start)
    return replace(base, tier="green", tier_since=obs.window_end, episode_id=None), [t]


def _attribution(ks: KeyState, obs: Observation, apportion: Apportion) -> Assignment:
    """Who leads and who assists. An open episode once led by another region stays led by it
    when a later window finds no external origin (a plume's tail is still the plume); a
    different external origin takes over."""
    a = Assignment(*apportion(obs))
    held = ks.origin_region
    if ks.tier != "green" and held not in (None, obs.region) and a.origin_region == obs.region:
        return Assignment(held, tuple(sorted((set(a.affected_regions) | {obs.region}) - {held})), {**(a.basis or {}), "held": "episode origin"})
    return a


def _reattribution(ks: KeyState, obs: Observation, rule_id: str, rules: RuleSet, apportion: Apportion) -> list[Transition]:
    """A 'reattribute' transition when the open episode's origin region changes (same tier)."""
    a = _attribution(ks, obs, apportion)
    before = ks.origin_region or obs.region
    if a.origin_region == before:
        return []
    basis = a.basis or {}
    share, pollutant = basis.get("origin_share"), basis.get("pollutant")
    ending = f"{datetime.fromtimestamp(basis.get('window_end', 0) / 1000, timezone.utc):%Y-%m-%d %H:%MZ}"
    if basis.get("method") == "water_reach":
        why = f"it answers for the river reach into {obs.subject} ({pollutant}, apportionment window ending {ending})"
    elif share is not None and pollutant:
        why = f"{share:.0%} of {obs.region}'s {pollutant} in the apportionment window ending {ending} came from it"
    else:
        why = "apportionment"
    reason = f"origin {a.origin_region} (was {before}): {why}"
    return [_transition(ks, obs, rule_id, rules, apportion, "reattribute", ks.tier, obs.value, None, reason, obs.window_start, a)]


def _transition(
    ks: KeyState, obs: Observation, rule_id: str, rules: RuleSet, apportion: Apportion,
    action: Action, tier: Tier, value: float | None, threshold: float | None, reason: str, since: int,
    assignment: Assignment | None = None,
) -> Transition:
    aid = alert_id(ks.key, tier, obs.window_end, rules.rule_set_id, rules.version)
    origin, affected, basis = assignment or _attribution(ks, obs, apportion)
    return Transition(
        alert_id=aid,
        episode_id=aid if action == "raise" else (ks.episode_id or aid),
        action=action,
        scope=obs.scope, subject=obs.subject, region=obs.region, kind=obs.kind, indicator=obs.indicator,
        tier=tier, previous_tier=ks.tier,
        value=value, threshold=threshold, reason=reason,
        window_start=obs.window_start, window_end=obs.window_end, condition_since=since,
        completeness=obs.completeness, standard=obs.standard, inputs=obs.inputs if basis is None else {**obs.inputs, "attribution": basis},
        rule_id=rule_id, rule_set_id=rules.rule_set_id, rule_version=rules.version,
        origin_region=origin, affected_regions=tuple(affected),
    )


def health_probe(obs: Observation) -> Observation:
    """The health observation a station's data observation implies (same window; valid data or not)."""
    return Observation(obs.subject, obs.region, "health", HEALTH_INDICATOR, obs.window_start, obs.window_end,
                       None if obs.value is None else 1.0, obs.completeness, "", {"from": f"{obs.kind}/{obs.indicator}"})


def heartbeat(station: str, region: str, at: int) -> Observation:
    """A no-data tick at event time `at` (e.g. from a watermark timer), so silence is noticed."""
    return Observation(station, region, "health", HEALTH_INDICATOR, at, at, None, 0.0, "", {"from": "heartbeat"})
