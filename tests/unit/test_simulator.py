"""Unit tests of the station-network simulator: no broker, no services."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner

from calibration.models import EPA_2022_BREAKPOINTS, EpaPurpleAir2021, EpaPurpleAir2022, Model, model_from_dict
from calibration.registry import load_registry
from jointwatch.stack.secrets import Secrets
from schemas.errors import ConfigError
from schemas.network import Network, distance_km, load_network, parse_network
from schemas.parameters import PARAMETERS
from schemas.topics import MQTT_UP
from simulator.cli import simulate as simulate_cmd
from simulator.faults import FaultConfig, round_sig3
from simulator.inverse import inverse
from simulator.publisher import BrokerError, publish
from simulator.scenario import (
    P,
    ScenarioBlock,
    ScenarioConfig,
    device_clocks,
    device_messages,
    faulty_stations,
    pair_series,
    simulate,
    subnetwork,
)
from simulator.sensors import SensorDrift, parse_drift

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
        sts = [s for s in net.stations.values() if s.region == r and s.colocated_with is None]
        assert sum(s.medium == "air" for s in sts) == 10
        assert sum(s.medium == "water" for s in sts) == 2
    # one low-cost pod beside a reference analyzer the plume reaches: the drift check's pair
    assert {s.id: s.colocated_with for s in net.stations.values() if s.colocated_with} == {"c-a11": "c-a01"}
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
    for name in ("true", "measured", "raw", "gw_delay_ms"):
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
    assert len(lines) == 2 * len(load_network(REPO / "config" / "network.yaml").stations)
    assert {json.loads(line)["seq"] for line in lines} == {0, 1}
    assert runner.invoke(simulate_cmd, ["--dry-run", "--steps", "2", "--seed", "3"]).stdout == first.stdout
    assert "clock faults:" in first.stderr


def test_cli_rejects_rate_with_speed() -> None:
    result = CliRunner().invoke(simulate_cmd, ["--rate", "10", "--speed", "60", "--steps", "1"])
    assert result.exit_code == 2
    assert "not both" in result.output


# --- co-location -------------------------------------------------------------------------


def _net_doc(**pod: object) -> dict:
    """A two-region network with a reference air station, a water station and a pod beside the reference."""
    station = {"id": "pod", "region": "r1", "medium": "air", "lat": 49.3173, "lon": 17.4645, "parameters": ["pm25"], "colocated_with": "ref"}
    return {
        "version": 1,
        "regions": [{"id": "r1", "timezone": "Europe/Prague"}],
        "stations": [
            {**station, **pod},  # before its partner: the check runs once every station is known
            {"id": "ref", "region": "r1", "medium": "air", "lat": 49.317, "lon": 17.464, "parameters": ["pm25", "rh"]},
            {"id": "wat", "region": "r1", "medium": "water", "lat": 49.317, "lon": 17.464, "river_km": 0, "parameters": ["ph"]},
        ],
    }


def test_colocation_is_parsed() -> None:
    n = parse_network(_net_doc(), Path("n.yaml"))
    assert n.stations["pod"].colocated_with == "ref" and n.stations["ref"].colocated_with is None
    assert 0.03 < distance_km(n.stations["pod"], n.stations["ref"]) < 0.06


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        ({"colocated_with": "nope"}, "unknown station 'nope'"),
        ({"colocated_with": "pod"}, "station pod cannot be co-located with itself"),
        ({"colocated_with": "wat"}, "wat is a water station, pod is air"),
        ({"colocated_with": 5}, "must be a station id"),
        ({"lat": 49.33}, r"ref is 1\.4\d km from pod; .* within 1 km"),
    ],
)
def test_colocation_errors_name_the_key_and_reason(pod: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"n\.yaml: stations\[0\]\.colocated_with: " + message):
        parse_network(_net_doc(**pod), Path("n.yaml"))


def test_colocation_partner_must_not_be_colocated_itself() -> None:
    doc = _net_doc()
    doc["stations"].append({"id": "pod2", "region": "r1", "medium": "air", "lat": 49.317, "lon": 17.4641, "parameters": ["pm25"], "colocated_with": "pod"})
    with pytest.raises(ConfigError, match=r"stations\[3\]\.colocated_with: pod is itself co-located with ref"):
        parse_network(doc, Path("n.yaml"))


def test_colocated_station_shares_its_partners_air_with_its_own_noise(net: Network, day: ScenarioBlock) -> None:
    pod, ref = day.index("c-a11"), day.index("c-a01")
    shared = day.measures[pod]
    assert np.array_equal(day.true[pod][:, shared], day.true[ref][:, shared])
    for src in day.contributions:
        assert np.array_equal(day.contributions[src][pod][:, shared], day.contributions[src][ref][:, shared])
    assert day.series("c-a11", "pm25", "plume").max() > 50  # the plume reaches the pair
    # calibrated against the reference: same gain and offset, independent noise
    a, b = rolling_hour(day.series("c-a11", "pm25")), rolling_hour(day.series("c-a01", "pm25"))
    assert not np.array_equal(day.series("c-a11", "pm25"), day.series("c-a01", "pm25"))
    assert np.abs(a - b).max() < 2.0
    slope, intercept = np.polyfit(b, a, 1)
    assert abs(slope - 1) < 0.03 and abs(intercept) < 1.5
    # the pod leaves every other station's values and the seeded clock faults as they were
    alone = simulate(replace(net, stations={k: v for k, v in net.stations.items() if k != "c-a11"}), ScenarioConfig(), 0, 60)
    others = [day.index(s) for s in alone.station_ids]
    assert np.array_equal(alone.measured, day.measured[others, :60], equal_nan=True)
    assert faulty_stations(replace(net, stations={k: v for k, v in net.stations.items() if k != "c-a11"}), ScenarioConfig()) == faulty_stations(net, ScenarioConfig())


# --- calibration inverse -----------------------------------------------------------------

EXTRA_MODELS = {  # types the demo registry may not use (yet)
    "unit_conversion": {"type": "unit_conversion", "coefficients": {"species": "no2", "from_unit": "ppb", "to_unit": "ug/m3"}},
    "chain": {"type": "chain", "coefficients": {"steps": [
        {"type": "linear", "coefficients": {"gain": 0.9, "offset": -1.0}},
        {"type": "unit_conversion", "coefficients": {"species": "no2", "from_unit": "ppb", "to_unit": "ug/m3"}}]}},
    "chain_bisected": {"type": "chain", "coefficients": {"steps": [
        {"type": "epa_purpleair_2022"}, {"type": "linear", "coefficients": {"gain": 1.1, "offset": 0.5}}]}},
    "polynomial": {"type": "polynomial", "coefficients": {"coefficients": [0.8, 0.62, 0.0011]}},
    "polynomial_linear": {"type": "polynomial", "coefficients": {"coefficients": [1.0, 0.5]}},
    "polynomial_decreasing": {"type": "polynomial", "coefficients": {"coefficients": [100.0, -0.5, -0.0001]}},
}


def _registry_models() -> list[tuple[str, Model]]:
    reg = load_registry(REPO / "config" / "calibration.yaml")
    return [(f"{s.key} v{v.version}", v.model) for s in reg.sensors.values() for v in s.versions]


@pytest.mark.parametrize(("name", "model"), _registry_models() + [(k, model_from_dict(d)) for k, d in EXTRA_MODELS.items()])
def test_model_of_inverse_gives_the_value_back(name: str, model: Model) -> None:
    n = 4000
    rng = np.random.default_rng(1)
    x = np.concatenate([np.linspace(0.0, 600.0, n // 2), rng.uniform(0.0, 1500.0, n // 2)])
    cov = {"rh": rng.uniform(0.0, 100.0, n), "temp": rng.uniform(-20.0, 40.0, n)}
    y = model.apply(x, cov)
    y = y[np.isfinite(y)]
    keep = {k: v[: y.size] for k, v in cov.items()}
    back = model.apply(inverse(model, y, keep, (0.0, 2000.0)), keep)
    assert np.allclose(back, y, rtol=1e-9, atol=1e-9), name


def test_epa_2022_inverse_across_its_breakpoints() -> None:
    model = EpaPurpleAir2022()
    eps = np.array([-1e-6, 0.0, 1e-6])
    pa = np.concatenate([bp + eps for bp in EPA_2022_BREAKPOINTS] + [np.linspace(0.0, 400.0, 801)])
    for rh in (0.0, 35.0, 70.0, 100.0):
        cov = {"rh": np.full(pa.size, rh)}
        y = model.apply(pa, cov)
        x = inverse(model, y, cov, (0.0, 2000.0))
        assert np.allclose(model.apply(x, cov), y, rtol=1e-10, atol=1e-10)
        reachable = y > 0  # the clipped part maps many PA to 0
        assert np.allclose(x[reachable], pa[reachable], atol=1e-7)


def test_inverse_is_nan_without_a_covariate_and_ends_outside_the_range() -> None:
    assert np.isnan(inverse(EpaPurpleAir2022(), np.array([20.0]), None)).all()
    assert np.isnan(inverse(EpaPurpleAir2021(), np.array([20.0]), {"rh": np.array([np.nan])})).all()
    poly = model_from_dict(EXTRA_MODELS["polynomial"])
    assert inverse(poly, np.array([1e9, -5.0]), None, (0.0, 2000.0)).tolist() == pytest.approx([2000.0, 0.0])


# --- raw device values: registry inverse and drift -----------------------------------------

REGISTRY_YAML = """
version: 1
registry_id: test
unlisted_sensors: pass
sensors:
  - station_id: c-a11
    parameter: pm25
    models:
      - {model_id: factory, version: 1, effective_from: "2026-01-01T00:00:00+01:00", type: linear, coefficients: {gain: 0.75, offset: -1.5}}
      - {model_id: recal, version: 2, effective_from: "2026-11-22T12:00:00Z", type: linear, coefficients: {gain: 0.8, offset: -1.0}}
  - station_id: c-a01
    parameter: pm25
    models:
      - {model_id: epa, version: 1, effective_from: "2026-01-01T00:00:00+01:00", type: epa_purpleair_2022}
  - station_id: c-a01
    parameter: o3
    models:
      - {model_id: mox, version: 1, effective_from: "2026-01-01T00:00:00+01:00", type: multilinear, coefficients: {gain: 1.05, offset: -2.0, covariates: {rh: -0.08, temp: 0.15}}}
  - station_id: c-a01
    parameter: pm10
    models:
      - {model_id: later, version: 1, effective_from: "2027-01-01T00:00:00+01:00", type: linear, coefficients: {gain: 2.0, offset: 0.0}}
"""


@pytest.fixture(scope="module")
def registry_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("calibration") / "calibration.yaml"
    path.write_text(REGISTRY_YAML)
    return path


@pytest.fixture(scope="module")
def pair_day(net: Network, registry_file: Path) -> ScenarioBlock:
    return simulate(subnetwork(net, ["c-a11"]), ScenarioConfig(calibration_file=registry_file), 0, 24 * HOUR)


def test_listed_sensors_send_raw_values_the_registry_calibrates_back(net: Network, pair_day: ScenarioBlock, registry_file: Path) -> None:
    reg = load_registry(registry_file, net)
    blk = pair_day
    for sid in blk.station_ids:
        st = net.stations[sid]
        i = blk.index(sid)
        n = blk.times_ms.size
        cov = {c: round_sig3(blk.measured[i, :, P[c]]) for c in ("rh", "temp") if c in st.parameters}
        for param in st.parameters:
            raw, measured = blk.raw[i, :, P[param]], blk.measured[i, :, P[param]]
            codes = reg.sensor_codes(np.full(n, sid), np.full(n, param))
            exact = reg.calibrate(codes, blk.times_ms, raw, cov)
            sent = reg.calibrate(codes, blk.times_ms, round_sig3(raw), cov)  # what the pipeline gets
            in_effect = reg.lookup(codes, blk.times_ms) >= 0
            # listed but before its first version (c-a01 pm10): flagged missing, whatever is sent
            assert np.array_equal(sent.missing, (codes >= 0) & ~in_effect), (sid, param)
            ok = ~sent.missing
            assert np.allclose(exact.value[ok], measured[ok], rtol=1e-9, atol=1e-9), (sid, param)
            # 3 significant digits of the raw value: within 0.5% (far below the sensors' noise)
            assert np.allclose(sent.value[ok], measured[ok], rtol=5e-3, atol=0.05), (sid, param)
            if not in_effect.any():  # unlisted, or no model in effect yet: the device sends the reading
                assert np.array_equal(raw, measured), (sid, param)
            else:
                assert not np.allclose(raw, measured), (sid, param)
    assert {(s.station_id, s.parameter) for s in reg.sensors.values()} <= {(sid, p) for sid in blk.station_ids for p in net.stations[sid].parameters}
    # the model in effect switches at its effective_from: raw = (measured - offset) / gain of each version
    i, t = blk.index("c-a11"), blk.times_ms
    v2 = t >= int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 1000)
    m = blk.measured[i, :, P["pm25"]]
    expected = np.where(v2, (m + 1.0) / 0.8, (m + 1.5) / 0.75)
    assert np.allclose(blk.raw[i, :, P["pm25"]], expected) and v2.any() and (~v2).any()


def test_measured_values_do_not_depend_on_the_registry(net: Network, pair_day: ScenarioBlock) -> None:
    plain = simulate(subnetwork(net, ["c-a11"]), ScenarioConfig(calibration_file=None), 0, 2 * HOUR)
    assert np.array_equal(plain.measured, pair_day.measured[:, : 2 * HOUR], equal_nan=True)
    assert np.array_equal(plain.raw, plain.measured, equal_nan=True)  # no registry: devices send the readings


def test_payloads_carry_the_raw_values(net: Network, registry_file: Path) -> None:
    sub = subnetwork(net, ["c-a11"])
    cfg = ScenarioConfig(calibration_file=registry_file)
    blk = simulate(sub, cfg, 0, 1)
    for doc in decode(device_messages(sub, cfg, 0, 1)):
        i = blk.index(doc["station_id"])
        assert doc["values"]["pm25"] == round_sig3(blk.raw[i, 0, P["pm25"]])


def test_drift_factor() -> None:
    d = SensorDrift("c-a11", "pm25", 0.2, 14, start_ms=1_000)
    day = 86_400_000
    t = np.array([0, 1_000, 1_000 + 7 * day, 1_000 + 14 * day, 1_000 + 30 * day])
    assert d.factor(t, 0).tolist() == pytest.approx([1.0, 1.0, 1.1, 1.2, 1.2])
    assert SensorDrift("c-a11", "pm25", -0.1, 2).factor(np.array([5 * day]), 4 * day).tolist() == pytest.approx([0.95])
    for bad in ({"gain_change": -1.0}, {"over_days": 0.0}, {"parameter": "nope"}):
        with pytest.raises(ValueError):
            SensorDrift(**{"station_id": "c-a11", "parameter": "pm25", "gain_change": 0.2, "over_days": 14.0, **bad})


def test_parse_drift() -> None:
    assert parse_drift("c-a11/pm25:0.2:14") == SensorDrift("c-a11", "pm25", 0.2, 14.0, None)
    iso = parse_drift("c-a11/pm25:0.2:14:2026-11-22T06:00:00Z")  # START may contain colons
    assert iso.start_ms == ScenarioConfig().start_ms + 6 * 3_600_000
    assert parse_drift("c-a11/pm25:0.2:14:2026-11-22T06:00:00").start_ms == iso.start_ms  # naive = UTC
    assert parse_drift("n-a03/pm25:-0.1:3.5:1700000000000") == SensorDrift("n-a03", "pm25", -0.1, 3.5, 1_700_000_000_000)
    for bad in ("c-a11:0.2:14", "c-a11/pm25:0.2", "c-a11/pm25:x:14", "c-a11/pm25:0.2:14:tomorrow", "c-a11/pm25:0.2:0"):
        with pytest.raises(ValueError):
            parse_drift(bad)


def test_drift_multiplies_the_raw_output_after_the_inverse(net: Network, registry_file: Path, pair_day: ScenarioBlock) -> None:
    start = ScenarioConfig().start_ms + 6 * 3_600_000
    cfg = ScenarioConfig(calibration_file=registry_file, drift=(SensorDrift("c-a11", "pm25", 0.5, 0.5, start),))
    blk = simulate(subnetwork(net, ["c-a11"]), cfg, 0, 24 * HOUR)
    i = blk.index("c-a11")
    factor = blk.raw[i, :, P["pm25"]] / pair_day.raw[i, :, P["pm25"]]
    assert np.allclose(factor, cfg.drift[0].factor(blk.times_ms, cfg.start_ms))
    assert factor[0] == 1.0 and factor[-1] == pytest.approx(1.5)
    others = np.ones(blk.raw.shape, dtype=bool)
    others[i, :, P["pm25"]] = False
    assert np.array_equal(blk.raw[others], pair_day.raw[others], equal_nan=True)  # nothing else drifts
    assert np.array_equal(blk.measured, pair_day.measured, equal_nan=True)


def test_drift_of_an_unknown_sensor_is_rejected(net: Network) -> None:
    with pytest.raises(ValueError, match="unknown station 'nope'"):
        simulate(net, ScenarioConfig(drift=(SensorDrift("nope", "pm25", 0.2, 14),)), 0, 1)
    with pytest.raises(ValueError, match="does not measure 'so2'"):
        simulate(net, ScenarioConfig(drift=(SensorDrift("c-a11", "so2", 0.2, 14),)), 0, 1)
    with pytest.raises(ValueError, match="twice"):
        ScenarioConfig(drift=(SensorDrift("c-a11", "pm25", 0.2, 14), SensorDrift("c-a11", "pm25", 0.1, 14)))


def test_two_weeks_of_a_drifting_pair_are_cheap_and_show_the_drift(net: Network, registry_file: Path) -> None:
    cfg = ScenarioConfig(calibration_file=registry_file, drift=(SensorDrift("c-a11", "pm25", 0.2, 14),), plume_strength=0.0)
    began = time.perf_counter()
    ps = pair_series(net, cfg, "c-a11", "pm25", cfg.start_ms, cfg.start_ms + 14 * 86_400_000)
    assert time.perf_counter() - began < 1.0
    assert ps.times_ms.size == 14 * 24 * HOUR and set(ps.covariates) == {"rh", "temp"}
    hours, raw = ps.hourly(ps.sensor_raw)
    _, ref = ps.hourly(ps.reference)
    assert hours.size == 14 * 24 and hours[0] == cfg.start_ms
    # model v2 (gain 0.8, offset -1) holds from the first day on: raw = d(t) * (measured + 1) / 0.8
    for sl, d in ((slice(24, 96), 1.0 + 0.2 * 2.5 / 14), (slice(-72, None), 1.0 + 0.2 * 12.5 / 14)):
        slope, intercept = np.polyfit(ref[sl], raw[sl], 1)
        assert slope == pytest.approx(d / 0.8, rel=0.03), sl
        assert np.corrcoef(ref[sl], raw[sl])[0, 1] ** 2 > 0.9  # a drift fit has enough variation
    assert np.allclose(ps.sensor_raw[-1] / ((ps.sensor_measured[-1] + 1.0) / 0.8), 1.2, rtol=1e-4)


def test_cli_drift_option(tmp_path: Path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(simulate_cmd, ["--help"]).output
    assert "--drift STATION/PARAM:GAIN:DAYS[:START]" in help_text and "--calibration" in help_text
    bad = runner.invoke(simulate_cmd, ["--dry-run", "--steps", "1", "--drift", "c-a11/pm25:0.2"])
    assert bad.exit_code == 2 and "STATION/PARAM:GAIN:DAYS" in bad.output
    unknown = runner.invoke(simulate_cmd, ["--dry-run", "--steps", "1", "--drift", "x-a99/pm25:0.2:14"])
    assert unknown.exit_code == 2 and "unknown station 'x-a99'" in unknown.output
    registry = tmp_path / "calibration.yaml"
    registry.write_text(REGISTRY_YAML)
    args = ["--dry-run", "--steps", "1", "--calibration", str(registry)]
    plain = runner.invoke(simulate_cmd, args)
    drifted = runner.invoke(simulate_cmd, [*args, "--drift", "c-a11/pm25:1.0:1:2026-11-21T00:00:00Z"])  # a day ago: fully drifted
    assert plain.exit_code == 0 and drifted.exit_code == 0, plain.output + drifted.output

    def pm25(out: str) -> dict[str, float]:
        return {d["station_id"]: d["values"].get("pm25") for d in map(json.loads, out.splitlines())}

    a, b = pm25(plain.stdout), pm25(drifted.stdout)
    assert b["c-a11"] == pytest.approx(2 * a["c-a11"], rel=0.01)
    assert {k: v for k, v in a.items() if k != "c-a11"} == {k: v for k, v in b.items() if k != "c-a11"}
    broken = tmp_path / "broken.yaml"
    broken.write_text(REGISTRY_YAML.replace("c-a01", "x-a99"))
    refused = runner.invoke(simulate_cmd, ["--dry-run", "--steps", "1", "--calibration", str(broken)])
    assert refused.exit_code == 1 and "unknown station 'x-a99'" in refused.output
