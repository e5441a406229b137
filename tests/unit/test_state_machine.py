"""The alert state machine: hand-worked sequences and hypothesis properties (no services)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.tiers.model import Key, KeyState, MachineState, Observation, Transition
from alerts.tiers.rules import TIER_RANK, RuleSet, parse_rules
from alerts.tiers.state_machine import alert_id, health_probe, heartbeat, run, step, step_region
from schemas.network import parse_network

H = 3_600_000
M = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z

NETWORK = parse_network(
    {
        "version": 1,
        "regions": [{"id": "north", "timezone": "UTC"}, {"id": "south", "timezone": "UTC"}],
        "stations": [
            *({"id": f"n-a0{i}", "region": "north", "medium": "air", "lat": 1, "lon": 1, "parameters": ["pm25"]} for i in range(1, 5)),
            {"id": "s-a01", "region": "south", "medium": "air", "lat": 1, "lon": 1, "parameters": ["pm25"]},
            {"id": "n-w01", "region": "north", "medium": "water", "lat": 1, "lon": 1, "river_km": 0, "parameters": ["nh3n"]},
        ],
    },
    Path("net.yaml"),
)
STATIONS = ("n-a01", "n-a02", "n-a03", "n-a04")

DOC: dict[str, Any] = {
    "version": 3,
    "rule_set_id": "test",
    "regions": {
        "default": {
            "air": {
                "tiers": {
                    "yellow": {"enter_above": 150, "exit_below": 130},
                    "red": {"enter_above": 200, "exit_below": 180, "persistence": {"observations": 2}},
                },
                "min_dwell_minutes": 120,
                "region_level": {"min_stations": 2},
            },
            "water": {
                "target_class": "III",
                "persistence": {"observations": 2},
                "tiers": {"yellow": {"worse_by": 1}, "red": {"worse_by": 2, "or_class": "worse_than_V"}},
                "jumps": {"nh3n": {"window_minutes": 120, "rise": "absolute", "tiers": {"yellow": {"enter_above": 0.5, "exit_below": 0.2}}}},
            },
            "health": {"silent_minutes": 30, "pending_minutes": 10, "exit_persistence": {"observations": 2}},
        },
    },
}


def rules_with(**air: Any) -> RuleSet:
    """The test rules with keys of the default air block replaced (version/id via _version/_id)."""
    doc = copy.deepcopy(DOC)
    doc["version"] = air.pop("_version", doc["version"])
    doc["regions"]["default"]["air"].update(air)
    return parse_rules(doc, NETWORK, "test")


RULES = rules_with()


def air(i: int, value: float | None, station: str = "n-a01", region: str = "north") -> Observation:
    """The hourly AQI of hour i."""
    return Observation(station, region, "air", "aqi", T0 + i * H, T0 + (i + 1) * H, value, 1.0, "HJ 633-2012", {"pm25": value})


def water(i: int, value: float | None, indicator: str = "class") -> Observation:
    return Observation("n-w01", "north", "water", indicator, T0 + i * H, T0 + (i + 1) * H, value, 1.0, "GB 3838-2002")


def feed(observations: list[Observation], rules: RuleSet = RULES, state: KeyState | None = None) -> tuple[KeyState, dict[int, Transition]]:
    """Step one key; transitions by the index of the observation that caused them."""
    out: dict[int, Transition] = {}
    for i, obs in enumerate(observations):
        state, ts = step(state, obs, rules)
        assert len(ts) <= 1
        if ts:
            out[i] = ts[0]
    assert state is not None
    return state, out


# ------------------------------------------------------------------ hand-worked sequences


def test_raise_then_escalate_after_persistence_then_deescalate_after_dwell_then_clear() -> None:
    values = [100, 160, 210, 220, 175, 185, 175, 125, 125]
    state, ts = feed([air(i, v) for i, v in enumerate(values)])
    assert sorted(ts) == [1, 3, 6, 8]
    raise_, esc, deesc, clear = ts[1], ts[3], ts[6], ts[8]

    assert (raise_.action, raise_.previous_tier, raise_.tier, raise_.threshold, raise_.value) == ("raise", "green", "yellow", 150, 160)
    assert (raise_.window_start, raise_.window_end) == (T0 + H, T0 + 2 * H)
    # red needs 2 consecutive observations above 200: hours 2 and 3, so escalation at hour 3
    assert (esc.action, esc.previous_tier, esc.tier, esc.threshold, esc.condition_since) == ("escalate", "yellow", "red", 200, T0 + 2 * H)
    # red entered at the end of hour 3: hour 4 (175 < 180) is only 1 h later (dwell 2 h);
    # hour 5 (185) holds red; hour 6 (175) de-escalates
    assert (deesc.action, deesc.previous_tier, deesc.tier, deesc.threshold, deesc.value) == ("deescalate", "red", "yellow", 180, 175)
    # yellow entered at the end of hour 6: hour 7 is too early, hour 8 clears
    assert (clear.action, clear.previous_tier, clear.tier, clear.threshold) == ("clear", "yellow", "green", 130)
    assert {t.episode_id for t in ts.values()} == {raise_.alert_id}
    assert len({t.alert_id for t in ts.values()}) == 4
    assert all((t.rule_id, t.rule_set_id, t.rule_version) == ("test/north/air/aqi", "test", 3) for t in ts.values())
    assert all((t.origin_region, t.affected_regions, t.standard) == ("north", (), "HJ 633-2012") for t in ts.values())
    assert raise_.inputs == {"pm25": 160} and "aqi 160 > 150" in raise_.reason
    assert state.tier == "green" and state.episode_id is None


def test_value_inside_the_hysteresis_band_never_clears() -> None:
    state, ts = feed([air(0, 160)] + [air(i, 131) for i in range(1, 30)])
    assert list(ts) == [0] and state.tier == "yellow"


def test_insufficient_data_never_raises_clears_or_counts_toward_persistence() -> None:
    _, ts = feed([air(i, None) for i in range(10)])
    assert ts == {}
    state, ts = feed([air(0, 160)] + [air(i, None) for i in range(1, 10)])
    assert list(ts) == [0] and state.tier == "yellow"  # hours without data do not clear it
    # 210, no data, 210: not two consecutive hours above 200; the next 210 escalates
    _, ts = feed([air(0, 210), air(1, None), air(2, 210), air(3, 210)])
    assert [(i, t.action) for i, t in ts.items()] == [(0, "raise"), (3, "escalate")]


def test_persistence_as_event_time_duration() -> None:
    # "AQI > 200 for >= 2 consecutive hours": the run must cover 120 min from its first window's start
    rules = rules_with(tiers={"yellow": {"enter_above": 150, "exit_below": 130},
                              "red": {"enter_above": 200, "exit_below": 180, "persistence": {"minutes": 120}}})
    _, ts = feed([air(0, 210), air(1, 210)], rules)
    assert [(i, t.tier, t.condition_since) for i, t in ts.items()] == [(0, "yellow", T0), (1, "red", T0)]
    # rolling 1-h windows every 10 min: covered time reaches 120 min at the window ending 60 min after the first
    rolling = [Observation("n-a01", "north", "air", "aqi", T0 + m * M - H, T0 + m * M, 210.0) for m in range(0, 70, 10)]
    _, ts = feed(rolling, rules)
    assert [(i, t.tier) for i, t in ts.items()] == [(0, "yellow"), (6, "red")]


def test_a_gap_between_windows_breaks_persistence() -> None:
    _, ts = feed([air(0, 160), air(1, 210), air(3, 210), air(4, 210)])
    assert [(i, t.action) for i, t in ts.items()] == [(0, "raise"), (3, "escalate")]


def test_old_and_duplicate_observations_are_ignored() -> None:
    state, _ = feed([air(0, 160), air(1, 210)])
    for old in (air(1, 300), air(0, 300)):
        again, ts = step(state, old, RULES)
        assert again is state and ts == []


def test_health_no_data_after_silence_and_pending_and_clear_after_recovery() -> None:
    def data(minute: int) -> Observation:
        return health_probe(Observation("n-a01", "north", "air", "aqi", T0 + (minute - 1) * M, T0 + minute * M, 50.0))

    def tick(minute: int) -> Observation:
        return heartbeat("n-a01", "north", T0 + minute * M)

    events = [data(1), tick(20), tick(35), data(36), tick(60), tick(75), tick(76), tick(90), data(95), tick(96), data(97)]
    state, ts = feed(events)
    # silent 34 min at minute 35 (>= 30 but within the 10 min pending): a hiccup, no alert
    # silent 40 min at minute 76: yellow; recovery needs 2 observations without silence
    assert sorted(ts) == [6, 9]
    assert (ts[6].action, ts[6].tier, ts[6].value, ts[6].threshold, ts[6].kind, ts[6].indicator) == ("raise", "yellow", 40, 40, "health", "no-data")
    assert (ts[9].action, ts[9].tier, ts[9].window_end) == ("clear", "green", T0 + 96 * M)
    assert state.tier == "green" and state.last_valid_end == T0 + 97 * M
    # an insufficient data window is "no data" for health
    no_data = health_probe(air(0, None))
    assert no_data.value is None and no_data.kind == "health"


def test_water_class_against_the_target_and_the_station_override() -> None:
    classes = [3, 4, 4, 6, 6, 3]
    state, ts = feed([water(i, c) for i, c in enumerate(classes)])
    # persistence 2: IV twice raises yellow; worse than V twice escalates; back to III clears at once (dwell 0)
    assert [(i, t.action, t.tier) for i, t in ts.items()] == [(2, "raise", "yellow"), (4, "escalate", "red"), (5, "clear", "green")]
    assert ts[2].threshold == 4 and ts[4].threshold == 5 and "target III" in ts[2].reason
    doc = copy.deepcopy(DOC)
    doc["regions"]["north"] = {"water": {"station_targets": {"n-w01": "II"}}}
    _, ts = feed([water(0, 3), water(1, 3)], parse_rules(doc, NETWORK))
    assert [(i, t.tier) for i, t in ts.items()] == [(1, "yellow")]
    with pytest.raises(ValueError, match="water class must be 1..6"):
        step(None, water(0, 7), RULES)


def test_acute_jump_over_the_trailing_window() -> None:
    values = [0.3, 0.4, 1.0, 1.0, 1.0]
    _, ts = feed([water(i, v, "nh3n") for i, v in enumerate(values)])
    # hour 2: 1.0 - min(0.3, 0.4) = 0.7 > 0.5; hour 4: the 2 h window holds only 1.0s, rise 0 < 0.2
    assert [(i, t.action) for i, t in ts.items()] == [(2, "raise"), (4, "clear")]
    assert ts[2].value == pytest.approx(0.7) and ts[2].rule_id == "test/north/water/nh3n"


def test_rules_version_change_applies_from_the_next_observation_and_is_reported() -> None:
    v4 = rules_with(_version=4, min_dwell_minutes=0, tiers={"yellow": {"enter_above": 170, "exit_below": 150}})
    _, ts = run([air(0, 160), v4, air(1, 165), air(2, 140)], RULES)
    # under v3, 140 would hold yellow (exit below 130); v4 exits below 150
    assert [(t.action, t.rule_version, t.threshold) for t in ts] == [("raise", 3, 150), ("clear", 4, 150)]
    assert alert_id(Key("station", "n-a01", "air", "aqi"), "yellow", T0, "test", 3) != alert_id(Key("station", "n-a01", "air", "aqi"), "yellow", T0, "test", 4)
    # a new version restarts persistence runs (they were counted against the old thresholds)
    same_v4 = rules_with(_version=4)
    _, ts = run([air(0, 210), same_v4, air(1, 210), air(2, 210)], RULES)
    assert [(t.action, t.window_end, t.rule_version) for t in ts] == [("raise", T0 + H, 3), ("escalate", T0 + 3 * H, 4)]


def test_rules_without_the_key_clear_an_open_alert() -> None:
    doc = copy.deepcopy(DOC)
    doc["version"] = 5
    doc["regions"]["default"]["air"] = None
    _, ts = run([air(0, 160), parse_rules(doc, NETWORK), air(1, 300)], RULES)
    assert [(t.action, t.rule_version, t.threshold) for t in ts] == [("raise", 3, 150), ("clear", 5, None)]


def test_apportionment_hook_sets_origin_and_affected_regions() -> None:
    _, ts = step(None, air(0, 160, "s-a01", "south"), RULES, apportion=lambda o: ("north", ("south",)))
    assert (ts[0].region, ts[0].origin_region, ts[0].affected_regions) == ("south", "north", ("south",))


def test_state_and_transitions_serialise_to_json() -> None:
    state, ts = feed([air(0, 160), air(1, 210)])
    back = KeyState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert back == state
    assert step(back, air(2, 210), RULES) == step(state, air(2, 210), RULES)
    d = json.loads(json.dumps(ts[0].to_dict()))
    assert d["alert_id"] == ts[0].alert_id and d["affected_regions"] == [] and d["inputs"] == {"pm25": 160}


def test_region_level_once_per_event_time_with_k_stations() -> None:
    rules = rules_with(min_dwell_minutes=0)
    hour0 = [air(0, 160, s) for s in STATIONS]
    hour1 = [air(1, 160, "n-a01")] + [air(1, 100, s) for s in STATIONS[1:]]
    state, ts = run(hour0 + hour1, rules, network=NETWORK)
    region = [t for t in ts if t.scope == "region"]
    assert [(t.action, t.tier, t.value, t.threshold, t.window_end) for t in region] == [
        ("raise", "yellow", 4, 2, T0 + H),  # evaluated once, after all four stations of hour 0
        ("clear", "green", 1, 2, T0 + 2 * H),
    ]
    assert region[0].subject == "north" and region[0].origin_region == "north" and region[0].rule_id == "test/north/air/aqi/region"
    assert region[0].inputs["station_tiers"] == {s: "yellow" for s in STATIONS}
    assert state.tier_of(Key("region", "north", "air", "aqi")) == "green"


def test_step_region_quota_by_count_and_fraction() -> None:
    doc = copy.deepcopy(DOC)
    doc["regions"]["default"]["air"]["region_level"] = {"min_stations": 1, "min_fraction": 0.5}
    rules = parse_rules(doc, NETWORK)
    tiers = {"a": "red", "b": "green", "c": "green", "d": "green"}
    st1, ts = step_region(None, "north", "air", "aqi", tiers, T0, T0 + H, rules)
    assert ts == [] and st1.tier == "green"  # 1 of 4 < ceil(0.5 * 4)
    st2, ts = step_region(st1, "north", "air", "aqi", {**tiers, "b": "yellow"}, T0 + H, T0 + 2 * H, rules)
    assert [(t.action, t.tier) for t in ts] == [("raise", "yellow")]
    _, ts = step_region(st2, "north", "air", "aqi", {**tiers, "b": "red"}, T0 + 2 * H, T0 + 3 * H, rules)
    assert [(t.action, t.previous_tier, t.tier) for t in ts] == [("escalate", "yellow", "red")]


# ------------------------------------------------------------------ properties

PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def air_rules(draw: st.DrawFn) -> RuleSet:
    """The test thresholds with random persistence, dwell and exit persistence."""
    persist = {"observations": draw(st.integers(1, 3))}
    return rules_with(
        tiers={
            "yellow": {"enter_above": 150, "exit_below": 130, "persistence": persist},
            "red": {"enter_above": 200, "exit_below": 180, "persistence": {"observations": draw(st.integers(1, 3))}},
        },
        min_dwell_minutes=draw(st.sampled_from([0, 60, 120, 300])),
        exit_persistence={"observations": draw(st.integers(1, 3))},
    )


maybe_value = st.one_of(st.floats(0, 300), st.floats(0, 300), st.floats(0, 300), st.none())


def check_consistent(transitions: list[Transition]) -> dict[str, str]:
    """Per key: previous_tier is the tier after the last transition; actions match the tier moves."""
    tier: dict[str, str] = {}
    open_episode: dict[str, str | None] = {}
    for t in transitions:
        k = str(t.key)
        assert t.previous_tier == tier.get(k, "green"), t
        assert t.tier != t.previous_tier
        up = TIER_RANK[t.tier] > TIER_RANK[t.previous_tier]
        expected = ("raise" if t.previous_tier == "green" else "escalate") if up else ("clear" if t.tier == "green" else "deescalate")
        assert t.action == expected, t
        if t.action == "raise":
            open_episode[k] = t.alert_id
        assert t.episode_id == open_episode.get(k)
        tier[k] = t.tier
    assert len({t.alert_id for t in transitions}) == len(transitions)
    return tier


@PROPS
@given(rules=air_rules(), level=st.floats(0, 300), amplitude=st.floats(0, 9.99), noise=st.lists(st.floats(-1, 1), min_size=1, max_size=150))
def test_no_flapping_under_noise_narrower_than_the_hysteresis_band(rules: RuleSet, level: float, amplitude: float, noise: list[float]) -> None:
    # bands are 20 wide and 50 apart: noise of amplitude < 10 around any level can cross
    # each enter threshold upward at most once and can never fall below the exit threshold after
    _, ts = run([air(i, level + amplitude * n) for i, n in enumerate(noise)], rules)
    assert len(ts) <= 2
    assert all(t.action in ("raise", "escalate") for t in ts)
    check_consistent(ts)


@PROPS
@given(rules=air_rules(), values=st.lists(maybe_value, max_size=60))
def test_every_raise_is_cleared_once_the_signal_is_back_to_baseline_long_enough(rules: RuleSet, values: list[float | None]) -> None:
    state, ts = run([air(i, v) for i, v in enumerate(values)], rules)
    tiers = check_consistent(ts)
    raises, clears = sum(t.action == "raise" for t in ts), sum(t.action == "clear" for t in ts)
    still_open = state.tier_of(Key("station", "n-a01", "air", "aqi")) != "green"
    assert raises - clears == int(still_open)  # every raise is cleared or still open at the end
    assert (tiers.get("station:n-a01/air/aqi", "green") != "green") == still_open

    tail = [air(len(values) + j, 0.0) for j in range(5 + 3 + 1)]  # dwell (<= 5 h) + exit persistence (<= 3) + 1
    state, more = run(tail, rules, state)
    everything = ts + more
    check_consistent(everything)
    assert sum(t.action == "raise" for t in everything) == sum(t.action == "clear" for t in everything)
    assert state.tier_of(Key("station", "n-a01", "air", "aqi")) == "green"
    if everything:
        assert everything[-1].action == "clear"


@st.composite
def streams(draw: st.DrawFn) -> list[Observation | RuleSet]:
    """Hourly AQI of the four north stations, their health probes and heartbeats, and one rules switch."""
    hours = draw(st.integers(1, 30))
    events: list[Observation | RuleSet] = []
    for h in range(hours):
        for s in STATIONS:
            if draw(st.integers(0, 9)) == 0:
                continue  # station missing this hour
            obs = air(h, draw(maybe_value), s)
            events += [obs, health_probe(obs)]
        events += [heartbeat(s, "north", T0 + (h + 1) * H) for s in STATIONS if draw(st.booleans())]
    switch = draw(st.integers(0, len(events)))
    new = rules_with(_version=4, min_dwell_minutes=draw(st.sampled_from([0, 60])), region_level={"min_stations": draw(st.integers(1, 4))})
    return events[:switch] + [new] + events[switch:]


@PROPS
@given(events=streams(), data=st.data())
def test_ids_and_transitions_are_stable_under_replay_and_chunking(events: list[Observation | RuleSet], data: st.DataObject) -> None:
    state1, ts1 = run(events, RULES, network=NETWORK)
    state2, ts2 = run(events, RULES, network=NETWORK)
    assert [t.to_dict() for t in ts1] == [t.to_dict() for t in ts2] and state1 == state2
    check_consistent(ts1)

    split = data.draw(st.integers(0, len(events)), label="split")
    first, second = events[:split], events[split:]
    rules_at_split = next((e for e in reversed(first) if isinstance(e, RuleSet)), RULES)
    mid, ts_a = run(first, RULES, network=NETWORK, final=False)
    restored = MachineState.from_dict(json.loads(json.dumps(mid.to_dict())))
    assert restored == mid
    end, ts_b = run(second, rules_at_split, restored, network=NETWORK)
    assert [t.to_dict() for t in ts_a + ts_b] == [t.to_dict() for t in ts1]
    assert end == state1


@PROPS
@given(k=st.integers(1, 4), frames=st.lists(st.lists(st.sampled_from(["green", "yellow", "red"]), min_size=4, max_size=4), min_size=1, max_size=40))
def test_region_alert_iff_at_least_k_stations_in_the_tier(k: int, frames: list[list[str]]) -> None:
    doc = copy.deepcopy(DOC)
    doc["regions"]["default"]["air"]["region_level"] = {"min_stations": k}
    rules = parse_rules(doc, NETWORK)
    state: KeyState | None = None
    transitions: list[Transition] = []
    previous = "green"
    for i, frame in enumerate(frames):
        tiers = dict(zip(STATIONS, frame))
        state, ts = step_region(state, "north", "air", "aqi", tiers, T0 + i * H, T0 + (i + 1) * H, rules)  # type: ignore[arg-type]
        transitions += ts
        expected = "green"
        for tier in ("yellow", "red"):
            if sum(TIER_RANK[t] >= TIER_RANK[tier] for t in frame) >= k:  # type: ignore[index]
                expected = tier
        assert state.tier == expected, (frame, k)
        assert [t.tier for t in ts] == ([expected] if expected != previous else [])
        previous = expected
    check_consistent(transitions)
