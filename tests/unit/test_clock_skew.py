"""Per-device clock-skew estimation and correction (connectors/clock_skew.py), by hand-worked cases.

Samples are one a minute; the gateway receives each reading `delay` ms after the true
measurement time, so a device's sample offset is (its clock error - delay).
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from connectors.clock_skew import ClockConfig, ClockSkew, parse_clock_config
from jointwatch.settings import REPO_ROOT
from schemas.errors import ConfigError, read_yaml
from schemas.models import validation_errors

M, H = 60_000, 3_600_000
T0 = 1_795_392_000_000  # 2026-11-22T00:00:00Z
DELAYS = (1000, 2000, 1500, 1200, 1800)  # median 1500; cycled


def feed(cs: ClockSkew, skew, n: int, start: int = 0, delays=DELAYS, sid: str = "n-a01") -> list[tuple[int, int, int, dict | None]]:
    """(true time, event time, offset applied, event) of n one-minute samples; `skew(i)` is the clock error of sample i."""
    out = []
    for i in range(start, start + n):
        true = T0 + i * M
        d = true + (skew(i) if callable(skew) else skew)
        t, off, ev = cs.observe(sid, "north", d, true + delays[i % len(delays)])
        out.append((true, t, off, ev))
    return out


def events(rows) -> list[dict]:
    return [ev for *_, ev in rows if ev is not None]


def test_plus_8h_device_local_time_sent_as_utc() -> None:
    cs = ClockSkew()
    rows = feed(cs, 8 * H, 30)
    # Before min_samples (5) nothing is estimated, but a time 8 h after the gateway's receipt is
    # impossible: those readings are placed at their reference time, with their own offset.
    for i, (true, t, off, ev) in enumerate(rows[:4]):
        assert (t, off, ev) == (true + DELAYS[i], 8 * H - DELAYS[i], None)
    # 5th sample: median offset 8 h - 1.5 s; the applied offset is that in whole seconds (half up).
    (ev,) = events(rows)
    assert (ev["kind"], ev["offset_ms"], ev["applied_offset_ms"], ev["previous_applied_offset_ms"], ev["samples"]) == ("clock_skew", 8 * H - 1500, 8 * H - 1000, 0, 5)
    assert ev["corrected"] and ev["reference_time"] == rows[4][0] + DELAYS[4] and ev["device_time"] == rows[4][0] + 8 * H
    assert ev["event_id"] == f"n-a01/clock_skew/{ev['reference_time']}" and ev["tolerance_ms"] == 15_000
    assert validation_errors("device_health", ev) == []
    assert "+7h59m58s" in ev["reason"] and "+7h59m59s" in ev["reason"]
    # From then on: device time - 7h59m59s = true time + 1 s, every reading, on the device's own grid.
    assert all((t - true, off) == (1000, 8 * H - 1000) for true, t, off, _ in rows[4:])
    assert cs.estimate("n-a01") == 8 * H - 1500 and cs.applied("n-a01") == 8 * H - 1000


def test_device_9_9_minutes_behind() -> None:
    cs = ClockSkew()
    rows = feed(cs, -594_000, 20)
    # A clock behind the reference looks like a delayed message until 5 samples agree: kept as sent.
    assert all((t - true, off) == (-594_000, 0) for true, t, off, _ in rows[:4])
    (ev,) = events(rows)
    # median offset -594 s - 1.5 s = -595.5 s -> whole seconds, half up: -595 s.
    assert (ev["offset_ms"], ev["applied_offset_ms"], ev["samples"]) == (-595_500, -595_000, 5)
    assert all((t - true, off) == (1000, -595_000) for true, t, off, _ in rows[4:])


def test_clock_drifting_minutes_per_day_is_followed() -> None:
    cs = ClockSkew()
    rate = 6 * M // 1440  # 6 min/day = 250 ms per one-minute sample
    rows = feed(cs, lambda i: i * rate, 1440)
    evs = events(rows)
    first = next(i for i, r in enumerate(rows) if r[2])
    # Untouched while within the tolerance: the estimate (drift - median delay, lagging ~7 samples) passes 15 s
    # at about sample (15 s + 1.5 s) / 0.25 s + 7 = 73.
    assert 70 <= first <= 76 and all(t == true + i * rate for i, (true, t, off, _) in enumerate(rows[:first]))
    assert evs[0]["kind"] == "clock_skew" and evs[0]["previous_applied_offset_ms"] == 0
    # Once corrected, the window follows the drift: within lag (7 x 0.25 s) + delay + 1 s steps.
    assert max(abs(t - true) for true, t, *_ in rows[first:]) <= 4_500
    # A day's 6 minutes of drift are reported as material changes, one per tolerance moved, no more.
    assert all(e["kind"] == "clock_skew" for e in evs)
    moves = [b["offset_ms"] - a["offset_ms"] for a, b in itertools.pairwise(evs)]
    assert all(15_000 < m <= 17_000 for m in moves), moves  # checked whenever the applied second moves
    assert 20 <= len(evs) <= 23 and abs(cs.applied("n-a01") - (1439 * rate - 1500 - 7 * rate)) <= 1_500


def test_drift_back_within_tolerance_stops_the_correction_with_hysteresis() -> None:
    cs = ClockSkew()
    # 40 s fast, then drifting back by 0.5 s a minute until 0.
    rows = feed(cs, lambda i: 40_000 - max(0, i - 20) * 500 if i < 100 else 0, 120)
    kinds = [(e["kind"], e["corrected"]) for e in events(rows)]
    assert kinds[0] == ("clock_skew", True) and kinds[-1] == ("clock_ok", False)
    ok = events(rows)[-1]
    # Correction stops only once the estimate is within half the tolerance (7.5 s), not at 15 s.
    assert -7_500 <= ok["offset_ms"] <= 7_500 and ok["applied_offset_ms"] == 0 and ok["previous_applied_offset_ms"] != 0
    stop = next(i for i, r in enumerate(rows) if r[3] is ok)
    assert all(off != 0 for _, _, off, _ in rows[4:stop]) and all(off == 0 for _, _, off, _ in rows[stop:])
    assert validation_errors("device_health", ok) == []


def test_ntp_fix_of_a_fast_clock_is_a_jump_and_the_old_offset_is_dropped() -> None:
    cs = ClockSkew()
    rows = feed(cs, lambda i: 10 * M if i < 50 else 0, 80)
    skew, jump = events(rows)
    assert skew["kind"] == "clock_skew" and skew["applied_offset_ms"] == 10 * M - 1000
    assert (jump["kind"], jump["corrected"], jump["applied_offset_ms"], jump["previous_applied_offset_ms"], jump["samples"]) == ("clock_jump", False, 0, 10 * M - 1000, 3)
    # Samples 50, 51 look exactly like delayed or re-sent messages (device time behind the estimate),
    # which must keep the regime's correction; the 3rd agreeing one confirms the jump, and from
    # it on nothing of the old offset is applied.
    assert [off for _, _, off, _ in rows[50:52]] == [10 * M - 1000] * 2
    assert rows[52][3] is jump
    assert all((t, off) == (true, 0) for true, t, off, _ in rows[52:])
    assert cs.estimate("n-a01") == -1500 and cs.applied("n-a01") == 0


def test_forward_jump_never_puts_readings_in_the_future() -> None:
    cs = ClockSkew()
    rows = feed(cs, lambda i: 0 if i < 30 else 8 * H, 60)
    (jump,) = events(rows)
    assert (jump["kind"], jump["corrected"], jump["previous_applied_offset_ms"]) == ("clock_jump", True, 0)
    # The jump's first two readings (not yet confirmed) are placed at the reference time, not 8 h ahead.
    for i in (30, 31):
        true, t, off, _ = rows[i]
        assert (t, off) == (true + DELAYS[i % 5], 8 * H - DELAYS[i % 5])
    # Confirmed on the 3rd from the 3 new samples alone: median of delays 1000, 2000, 1500 -> 1500.
    assert rows[32][3] is jump and jump["offset_ms"] == 8 * H - 1500 and jump["applied_offset_ms"] == 8 * H - 1000
    assert all(t - true == 1000 for true, t, _, _ in rows[32:])


def test_jump_between_two_skews() -> None:
    cs = ClockSkew()
    rows = feed(cs, lambda i: 8 * H if i < 40 else 3 * M, 60)
    kinds = [e["kind"] for e in events(rows)]
    assert kinds == ["clock_skew", "clock_jump"]
    assert all(t - true == 1000 for true, t, _, _ in rows[42:])


def test_transport_delay_outliers_do_not_move_the_estimate() -> None:
    cs = ClockSkew()
    rows = feed(cs, 8 * H, 20)
    # A reading held 40 minutes in transit, then one re-sent an hour late, then normal again.
    for i, delay in ((20, 40 * M), (21, 1500), (22, 60 * M), (23, 1200)):
        true = T0 + i * M
        t, off, ev = cs.observe("n-a01", "north", true + 8 * H, true + delay)
        assert (t, off, ev) == (true + 1000, 8 * H - 1000, None)
    assert cs.estimate("n-a01") == 8 * H - 1500 and len(events(rows)) == 1


def test_replayed_backlog_is_corrected_with_the_device_offset_and_is_not_a_jump() -> None:
    """Without gw_ts the reference is the bridge's receipt: a 3-hour backlog arriving in a burst
    has offsets from -3 h to 0, each an outlier, and must not be mistaken for a jump."""
    cs = ClockSkew()
    feed(cs, 10 * M, 60)
    arrival = T0 + 4 * H
    for k, i in enumerate(range(60, 240)):
        true = T0 + i * M
        t, off, ev = cs.observe("n-a01", "north", true + 10 * M, arrival + 10 * k, "bridge")
        assert (t, off, ev) == (true + 1000, 10 * M - 1000, None)
    rows = feed(cs, 10 * M, 10, start=240)
    assert events(rows) == [] and all(t - true == 1000 for true, t, _, _ in rows)


def test_a_backlog_before_anything_is_known_is_not_trusted() -> None:
    cs = ClockSkew()
    for k in range(120):  # two hours of readings in two seconds: device time runs, reference time stands still
        true = T0 + k * M
        t, off, ev = cs.observe("n-a01", "north", true - 5 * M, T0 + 3 * H + 10 * k, "bridge")
        assert (t, off, ev) == (true - 5 * M, 0, None)
    assert cs.estimate("n-a01") is None


@pytest.mark.parametrize("skew", [0, 10_000, -12_000, 14_000])
def test_devices_within_tolerance_are_untouched(skew: int) -> None:
    cs = ClockSkew()
    rng = random.Random(skew)
    for i in range(500):
        true = T0 + i * M
        delay = rng.randint(200, 2500) if rng.random() > 0.05 else rng.randint(M, 2 * H)  # 5% long delays
        t, off, ev = cs.observe("n-a01", "north", true + skew, true + delay)
        assert (t, off, ev) == (true + skew, 0, None)


def test_same_samples_same_corrections_whatever_the_other_devices_do() -> None:
    def run(noise: bool) -> list:
        cs = ClockSkew()
        rng = random.Random(1)
        out = []
        for i in range(300):
            true = T0 + i * M
            if noise:  # another device, with its own jump, interleaved
                cs.observe("n-a02", "north", true + (5 * M if i < 150 else 0), true + 700)
            out.append(cs.observe("n-a01", "north", true + 8 * H + (i * 200 if i > 100 else 0), true + rng.randint(200, 2500)))
        return out

    assert run(False) == run(False) == run(True)


def test_re_sent_copy_gets_the_same_correction() -> None:
    """Copies re-sent after a reconnect (same device time; later, or the same, reference time)
    get the same event time while the estimate holds, so duplicates stay duplicates."""
    cs = ClockSkew()
    rows = feed(cs, -7 * M - 13_000, 30)
    for true, t, off, _ in rows[10:20]:
        assert cs.observe("n-a01", "north", true - 7 * M - 13_000, true + 1500)[:2] == (t, off)  # same gw_ts
        assert cs.observe("n-a01", "north", true - 7 * M - 13_000, T0 + 40 * M, "bridge")[:2] == (t, off)  # re-sent later


def test_shipped_config_is_the_defaults() -> None:
    path = REPO_ROOT / "config" / "clock.yaml"
    assert parse_clock_config(read_yaml(path), str(path)) == ClockConfig()
    assert parse_clock_config(None) == ClockConfig() and parse_clock_config({"tolerance_s": 2.5}).tolerance_ms == 2500


@pytest.mark.parametrize(
    ("doc", "key", "reason"),
    [
        ([1], "<root>", "must be a mapping"),
        ({"tolerance": 5}, "tolerance", "unknown setting"),
        ({"version": 2}, "version", "must be 1"),
        ({"tolerance_s": "15"}, "tolerance_s", "must be a number"),
        ({"tolerance_s": 0.5}, "tolerance_s", "within 1..86400 s"),
        ({"tolerance_s": float("nan")}, "tolerance_s", "must be a number"),
        ({"window": 2}, "window", "within 3..1000"),
        ({"window": 5.0}, "window", "must be an integer"),
        ({"window": True}, "window", "must be an integer"),
        ({"min_samples": 1}, "min_samples", "within 2..window"),
        ({"window": 10, "min_samples": 11}, "min_samples", "within 2..window (10)"),
        ({"jump_samples": 16}, "jump_samples", "within 2..window (15)"),
    ],
)
def test_config_errors_name_the_key(doc, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_clock_config(doc, "clock.yaml")
    assert (info.value.file, info.value.key) == ("clock.yaml", key)
    assert reason in info.value.reason


def test_config_file_errors(tmp_path: Path) -> None:
    from connectors.mqtt_bridge import load_clock_config

    f = tmp_path / "clock.yaml"
    f.write_text("version: 1\ntolerance_s: -3\n")
    with pytest.raises(ConfigError, match=r"clock.yaml: tolerance_s: must be within 1..86400 s, got -3"):
        load_clock_config(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_clock_config(tmp_path / "missing.yaml")


def test_re_sent_copies_are_no_new_evidence() -> None:
    """A drifting clock whose every sample arrives three times (redeliveries) is followed exactly
    as if each had arrived once: copies never weigh on the median."""
    rate = 6 * M // 1440
    once, thrice = ClockSkew(), ClockSkew()
    for i in range(400):
        true = T0 + i * M
        device, gw = true + 30_000 + i * rate, true + DELAYS[i % len(DELAYS)]
        expected = once.observe("n-a01", "north", device, gw)[:2]
        for _ in range(3):
            assert thrice.observe("n-a01", "north", device, gw)[:2] == expected
    assert thrice.applied("n-a01") == once.applied("n-a01") != 0


@pytest.mark.parametrize("split", [3, 7, 20, 41, 60])  # learning, established, correcting, mid-jump, after the jump
def test_a_restored_estimator_goes_on_exactly_as_if_never_stopped(split: int) -> None:
    import json

    def skew(i: int) -> int:
        return 9 * M + 250 * i if i < 40 else -30_000  # fast and drifting, then NTP sets it 30 s slow

    rng = random.Random(3)
    samples = [(T0 + i * M + skew(i), T0 + i * M + rng.choice(DELAYS)) for i in range(80)]
    samples[25:25] = [samples[24]]  # a re-sent copy
    whole = ClockSkew()
    expected = [whole.observe("n-a01", "north", d, r) for d, r in samples]

    first = ClockSkew()
    got = [first.observe("n-a01", "north", d, r) for d, r in samples[:split]]
    assert first.drain_changed() == {"n-a01"} and first.drain_changed() == set()
    saved = json.loads(json.dumps(first.state("n-a01")))  # through JSON, as the bridge stores it
    doc = {"schema": "jw.clock_state.v1", "station_id": "n-a01", "saved_at": 1, "state": saved}
    assert validation_errors("clock_state", doc) == []
    second = ClockSkew()
    second.restore("n-a01", saved)
    got += [second.observe("n-a01", "north", d, r) for d, r in samples[split:]]
    assert got == expected
    assert second.state("n-a01") == whole.state("n-a01") and second.estimate("n-a01") == whole.estimate("n-a01")


def test_a_restored_estimator_corrects_a_slow_clock_from_its_first_sample_where_a_fresh_one_cannot() -> None:
    learnt = ClockSkew()
    feed(learnt, -9 * M, 10)  # a clock 9 min slow: nothing bounds it, only the estimate corrects it
    restored, fresh = ClockSkew(), ClockSkew()
    restored.restore("n-a01", learnt.state("n-a01"))
    ((true, t_restored, off_restored, _),) = feed(restored, -9 * M, 1, start=10)
    ((_, t_fresh, off_fresh, _),) = feed(fresh, -9 * M, 1, start=10)
    assert off_restored == -9 * M - 1000 and t_restored == true + 1000  # median offset -9 min - 1.5 s, to whole seconds half up: -541 s
    assert (off_fresh, t_fresh) == (0, true - 9 * M)  # relearning: 9 min early until min_samples agree
