"""Unit tests of the station-network simulator: no broker, no services."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from jointwatch.stack.secrets import Secrets
from schemas.network import Network, load_network
from schemas.parameters import PARAMETERS
from schemas.topics import MQTT_UP
from simulator.cli import simulate as simulate_cmd
from simulator.faults import FaultConfig, round_sig3
from simulator.publisher import BrokerError, publish
from simulator.scenario import (
    P,
    ScenarioBlock,
    ScenarioConfig,
    device_clocks,
    device_messages,
    faulty_stations,
    simulate,
)

REPO = Path(__file__).resolve().parents[2]
HOUR = 60  # steps per hour at the default step of 60 s


@pytest.fixture(scope="module")
def net() -> Network:
    return load_network(REPO / "config" / "network.yaml")


@pytest.fixture(scope="module")
def day(net: Network) -> ScenarioBlock:
    return simulate(net, ScenarioConfig(), 0, 24 * HOUR)


def rolling_hour(x: np.ndarray) -> np.ndarray:
    """Trailing 60-step mean along the last axis (length shrinks by 59)."""
    c = np.cumsum(np.insert(x, 0, 0.0, axis=-1), axis=-1)
    return (c[..., HOUR:] - c[..., :-HOUR]) / HOUR


def longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for m in mask:
        run = run + 1 if m else 0
        best = max(best, run)
    return best


def first_above(x: np.ndarray, threshold: float) -> int:
    idx = np.flatnonzero(x > threshold)
    assert idx.size, f"never above {threshold}"
    return int(idx[0])


def decode(messages: list[tuple[str, bytes]]) -> list[dict]:
    return [json.loads(p) for _, p in messages]


# --- network -------------------------------------------------------------------------


def test_network_layout(net: Network) -> None:
    assert set(net.regions) == {"north", "central", "south"}
    for r in net.regions:
        sts = [s for s in net.stations.values() if s.region == r]
        assert sum(s.medium == "air" for s in sts) == 10
        assert sum(s.medium == "water" for s in sts) == 2
    # regions lie north of each other
    mean_lat = {r: np.mean([s.lat for s in [s for s in net.stations.values() if s.region == r]]) for r in net.regions}
    assert mean_lat["north"] > mean_lat["central"] > mean_lat["south"]
    # the river flows north -> central -> south with river_km increasing downstream
    water = sorted((s for s in net.stations.values() if s.medium == "water"), key=lambda s: s.river_km or 0)
    assert [s.region for s in water] == ["north", "north", "central", "central", "south", "south"]
    assert [s.lat for s in water] == sorted((s.lat for s in water), reverse=True)
    # at least one zone observes DST
    jan, jul = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)
    assert any(ZoneInfo(s.timezone).utcoffset(jan) != ZoneInfo(s.timezone).utcoffset(jul) for s in net.stations.values())


# --- determinism and chunking ----------------------------------------------------------


def test_deterministic_for_a_seed_and_different_for_another(net: Network, day: ScenarioBlock) -> None:
    again = simulate(net, ScenarioConfig(), 0, 200)
    assert np.array_equal(again.measured, day.measured[:, :200], equal_nan=True)
    assert device_messages(net, ScenarioConfig(), 0, 3) == device_messages(net, ScenarioConfig(), 0, 3)
    other = simulate(net, ScenarioConfig(seed=8), 0, 200)
    assert not np.allclose(other.measured, again.measured, equal_nan=True)
    assert device_messages(net, ScenarioConfig(seed=8), 0, 1) != device_messages(net, ScenarioConfig(), 0, 1)


@pytest.mark.parametrize("split", [(0, 100, 200), (1400, 1440, 1500)])  # the second crosses a random block
def test_chunking_invariance(net: Network, split: tuple[int, int, int]) -> None:
    a, m, b = split
    cfg = ScenarioConfig()
    whole, first, second = simulate(net, cfg, a, b - a), simulate(net, cfg, a, m - a), simulate(net, cfg, m, b - m)
    for name in ("true", "measured", "gw_delay_ms"):
        joined = np.concatenate([getattr(first, name), getattr(second, name)], axis=1)
        assert np.array_equal(getattr(whole, name), joined, equal_nan=True), name
    for src in whole.contributions:
        assert np.array_equal(whole.contributions[src], np.concatenate([first.contributions[src], second.contributions[src]], axis=1))
    assert device_messages(net, cfg, a, b - a) == device_messages(net, cfg, a, m - a) + device_messages(net, cfg, m, b - m)


# --- payloads ---------------------------------------------------------------------------


def test_payloads_validate_and_are_ordered(net: Network) -> None:
    schema = json.loads((REPO / "schemas" / "device_payload.v1.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    messages = device_messages(net, ScenarioConfig(), 5, 3)
    assert len(messages) == 3 * len(net.stations)
    docs = decode(messages)
    for (topic, _), doc in zip(messages, docs):
        validator.validate(doc)
        st = net.stations[doc["station_id"]]
        assert topic == MQTT_UP.format(region=st.region, station_id=st.id)
        assert list(doc["values"]) == list(st.parameters)
    assert [(d["seq"], d["station_id"]) for d in docs] == sorted((d["seq"], d["station_id"]) for d in docs)
    assert {d["seq"] for d in docs} == {5, 6, 7}


def test_round_sig3() -> None:
    got = round_sig3(np.array([1234.56, 123.456, 12.3456, 0.45678, 0.0123456, 0.0, 359.6]))
    assert got.tolist() == [1235.0, 123.0, 12.3, 0.457, 0.0123, 0.0, 360.0]


# --- physics ----------------------------------------------------------------------------


def test_values_within_physical_ranges(day: ScenarioBlock) -> None:
    for p, spec in PARAMETERS.items():
        col = P[p]
        measured = day.measured[:, :, col][day.measures[:, col]]
        true = day.true[:, :, col][day.measures[:, col]]
        assert not np.isnan(measured).any() and not np.isnan(true).any(), p
        assert measured.min() >= spec.low and measured.max() <= spec.high, p
        assert true.min() >= spec.low and true.max() <= spec.high, p
    hidden = np.broadcast_to(~day.measures[:, None, :], day.measured.shape)
    assert hidden.any() and np.isnan(day.measured[hidden]).all() and np.isnan(day.true[hidden]).all()


def test_sensor_bias_is_per_station_and_within_gain_range(net: Network) -> None:
    cfg = replace(ScenarioConfig(), plume_strength=0.0, spill_strength=0.0)
    blk = simulate(net, cfg, 0, 12 * HOUR)
    i = P["pm25"]
    fits = [np.polyfit(blk.true[s, :, i], blk.measured[s, :, i], 1) for s in np.flatnonzero(blk.measures[:, i])]
    gains, offsets = np.array([f[0] for f in fits]), np.array([f[1] for f in fits])
    assert gains.min() > 0.75 and gains.max() < 1.3
    assert gains.max() - gains.min() > 0.2  # stations really differ
    assert np.abs(offsets).max() < 8


def test_baseline_pm25_is_moderate(day: ScenarioBlock) -> None:
    i = P["pm25"]
    air = day.measures[:, i]
    hourly = rolling_hour(day.measured[air, :, i])
    untouched = rolling_hour(day.contributions["plume"][air, :, i]) < 0.5
    assert hourly[untouched].max() < 60
    assert 15 <= np.median(hourly[untouched]) <= 45


def test_diurnal_cycles(net: Network) -> None:
    cfg = replace(ScenarioConfig(), plume_strength=0.0, spill_strength=0.0)
    blk = simulate(net, cfg, 0, 48 * HOUR)
    local_h = ((blk.times_ms / 3_600_000) + 1) % 24  # CET in November
    afternoon, early = (local_h >= 13) & (local_h < 16), (local_h >= 3) & (local_h < 6)
    air = blk.measures[:, P["o3"]]

    def mean(p: str, sel: np.ndarray) -> float:
        return float(np.mean(blk.true[air][:, sel, P[p]]))

    assert mean("o3", afternoon) > 1.5 * mean("o3", early)
    assert mean("temp", afternoon) > mean("temp", early) + 4
    assert mean("rh", afternoon) < mean("rh", early)
    assert mean("pm25", early) > 1.2 * mean("pm25", afternoon)


def test_contributions_are_the_episode_ground_truth(net: Network, day: ScenarioBlock) -> None:
    quiet = simulate(net, replace(ScenarioConfig(), plume_strength=0.0, spill_strength=0.0), 0, 24 * HOUR)
    added = day.contributions["plume"] + day.contributions["spill"]
    assert np.allclose(np.nan_to_num(day.true - quiet.true), added, atol=1e-9)
    assert np.all(quiet.contributions["plume"] == 0) and np.all(quiet.contributions["spill"] == 0)
    plume_params = {p for p in day.params if np.abs(day.contributions["plume"][:, :, P[p]]).max() > 0}
    spill_params = {p for p in day.params if np.abs(day.contributions["spill"][:, :, P[p]]).max() > 0}
    assert plume_params == {"pm25", "pm10", "so2"}
    assert spill_params == {"nh3n", "tp", "codmn", "do"}


def test_plume_hits_north_then_central(day: ScenarioBlock) -> None:
    i = P["pm25"]
    hourly = {sid: rolling_hour(day.series(sid, "pm25")) for sid in day.station_ids if day.measures[day.index(sid), i]}
    north = {s: h for s, h in hourly.items() if s.startswith("n-")}
    central = {s: h for s, h in hourly.items() if s.startswith("c-")}
    worst_north = max(north, key=lambda s: north[s].max())
    assert north[worst_north].max() > 150
    central_long = {s: longest_run(h > 75) for s, h in central.items()}
    worst_central = max(central_long, key=central_long.__getitem__)
    assert central_long[worst_central] >= HOUR
    # transport lag: central crosses its threshold later, and the plume's mass arrives later
    assert first_above(central[worst_central], 75) > first_above(north[worst_north], 150)
    def centroid(sid: str) -> float:  # mean arrival time of the plume in the noise-free ground truth
        c = day.series(sid, "pm25", "plume")
        return float((np.arange(c.size) * c).sum() / c.sum())

    assert centroid(worst_central) - centroid(worst_north) >= 30
    # the episode starts ~40 sim minutes in: nothing before, and south and upwind north stay clean
    assert np.abs(day.contributions["plume"][:, :41]).max() == 0.0
    for sid in ("s-a01", "s-a05", "n-a07", "n-a05"):
        assert day.series(sid, "pm25", "plume").max() < 1.0, sid


def test_spill_travels_downstream_later_and_diluted(net: Network, day: ScenarioBlock) -> None:
    cfg = ScenarioConfig()
    nh = {s: rolling_hour(day.series(s, "nh3n")) for s in ("n-w01", "n-w02", "c-w01")}
    assert 0.3 <= day.series("n-w01", "nh3n")[:30].mean() <= 0.8  # baseline before the spill
    assert nh["n-w01"].max() > 3.0
    assert longest_run(nh["c-w01"] > 2.0) >= HOUR
    contrib = {s: day.series(s, "nh3n", "spill") for s in ("n-w01", "n-w02", "c-w01", "s-w01")}
    assert contrib["n-w01"][: int(cfg.spill_start_s / cfg.step_s) + 1].max() == 0.0  # nothing before the spill

    def centroid(c: np.ndarray) -> float:  # mean arrival time of the spilled mass
        return float((np.arange(c.size) * c).sum() / c.sum())

    arrival = {s: centroid(contrib[s]) for s in ("n-w01", "n-w02", "c-w01")}
    assert arrival["n-w01"] < arrival["n-w02"] < arrival["c-w01"]
    expected = (net.stations["c-w01"].river_km - net.stations["n-w01"].river_km) / cfg.river_speed_kmh * HOUR
    assert abs((arrival["c-w01"] - arrival["n-w01"]) - expected) < 15
    peak = {s: rolling_hour(c).max() for s, c in contrib.items()}
    assert peak["n-w01"] > peak["n-w02"] > peak["c-w01"]  # diluted on the way
    assert peak["s-w01"] < 0.01  # 130 km downstream: not there within the day


# --- device clock faults ----------------------------------------------------------------


def _utc_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def test_default_faults(net: Network) -> None:
    cfg = ScenarioConfig()
    clocks = device_clocks(net, cfg)
    kinds = [c.ts_format for c in clocks.values()]
    assert kinds.count("local_naive") == 2 and kinds.count("epoch_ms") == 2
    skewed = [c for c in clocks.values() if c.skew_s]
    assert len(skewed) == 3
    assert all(3 * 60 <= abs(c.skew_s) <= 12 * 60 for c in skewed)
    assert set(faulty_stations(net, cfg)) == {s for s, c in clocks.items() if c.faulty}
    assert len(faulty_stations(net, cfg)) == 7
    assert device_clocks(net, cfg) == clocks
    assert device_clocks(net, replace(cfg, seed=8)) != clocks


@pytest.mark.parametrize("start", ["2026-11-22T00:00:00Z", "2026-07-01T21:30:00Z"])  # CET and CEST
def test_timestamps_decode_to_true_time(net: Network, start: str) -> None:
    faults = FaultConfig(skewed=(("n-a01", 5.0), ("s-w02", -7.5)), local_time=("s-a01", "c-a02"), epoch_ms=("c-w01",))
    cfg = ScenarioConfig(start_ms=_utc_ms(start), faults=faults)
    clocks = device_clocks(net, cfg)
    assert clocks["n-a01"].skew_s == 300 and clocks["s-w02"].skew_s == -450
    lo, hi = cfg.gw_delay_s
    for doc in decode(device_messages(net, cfg, 0, 4)):
        sid, true_ms = doc["station_id"], cfg.start_ms + doc["seq"] * cfg.step_s * 1000
        ts = doc["ts"]
        if sid in ("s-a01", "c-a02"):
            assert isinstance(ts, str) and len(ts) == 19 and ts[10] == " "
            local = datetime.strptime(ts, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo(net.stations[sid].timezone))
            assert int(local.timestamp() * 1000) == true_ms
        elif sid == "c-w01":
            assert ts == true_ms
        else:
            assert isinstance(ts, str) and ts.endswith("Z")
            assert _utc_ms(ts) - true_ms == clocks[sid].skew_s * 1000
        assert doc["gw_ts"].endswith("Z")
        assert lo * 1000 <= _utc_ms(doc["gw_ts"]) - true_ms <= hi * 1000


def test_unknown_fault_station_is_rejected(net: Network) -> None:
    with pytest.raises(ValueError, match="nope"):
        device_clocks(net, ScenarioConfig(faults=FaultConfig(local_time=("nope",))))


def test_steps_between() -> None:
    cfg = ScenarioConfig()
    assert cfg.steps_between(cfg.start_ms, cfg.start_ms + 3_600_000) == range(60)
    assert cfg.steps_between(cfg.start_ms + 1, cfg.start_ms + 120_001) == range(1, 3)
    assert cfg.steps_between(cfg.start_ms - 10**9, cfg.start_ms) == range(0)


# --- publisher and CLI (no broker) ----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_publisher_reports_unreachable_broker(net: Network) -> None:
    port = _free_port()
    secrets = Secrets({sid: "pw" for sid in net.stations}, {}, "admin", "pw")
    with pytest.raises(BrokerError, match=rf"127\.0\.0\.1:{port}.*jointwatch stack up"):
        publish(net, ScenarioConfig(), secrets=secrets, port=port, steps=1, connect_timeout_s=2)


def test_publisher_reports_missing_credentials(net: Network) -> None:
    with pytest.raises(BrokerError, match="no MQTT password.*jointwatch stack up"):
        publish(net, ScenarioConfig(), secrets=Secrets({}, {}, "admin", "pw"), port=_free_port(), steps=1)


def test_cli_dry_run_prints_deterministic_json_lines() -> None:
    runner = CliRunner()
    first = runner.invoke(simulate_cmd, ["--dry-run", "--steps", "2", "--seed", "3"])
    assert first.exit_code == 0, first.output
    lines = first.stdout.splitlines()
    assert len(lines) == 72
    assert {json.loads(line)["seq"] for line in lines} == {0, 1}
    assert runner.invoke(simulate_cmd, ["--dry-run", "--steps", "2", "--seed", "3"]).stdout == first.stdout
    assert "clock faults:" in first.stderr


def test_cli_rejects_rate_with_speed() -> None:
    result = CliRunner().invoke(simulate_cmd, ["--rate", "10", "--speed", "60", "--steps", "1"])
    assert result.exit_code == 2
    assert "not both" in result.output
