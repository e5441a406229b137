"""The drift section of the registry file: defaults, every validation error as `file: drift.key:
reason`, and the pairing of low-cost sensors with the nearest reference monitor within the distance
(or an explicit one) on the demo network."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from calibration.drift import DriftSettings
from calibration.drift_config import DriftConfig, Pair, PairSpec, load_drift, pair_sensors, parse_drift
from calibration.registry import load_registry
from jointwatch.settings import REPO_ROOT
from schemas.errors import ConfigError
from schemas.network import Network
from tests.samples import NETWORK

SHIPPED = REPO_ROOT / "config" / "calibration.yaml"
DEMO_LISTED = {"n-a03/pm25", "n-a07/pm25", "c-a03/pm25", "s-a05/pm25", "c-a08/no2", "s-a09/o3", "n-a09/pm10"}
# The demo network's fixed stations (without co-located pods, which the network may gain): distances below are theirs.
FIXED = Network(NETWORK.regions, {k: s for k, s in NETWORK.stations.items() if getattr(s, "colocated_with", None) is None}, NETWORK.river)


def test_defaults_and_derived_validity_shares() -> None:
    assert parse_drift(None, "f.yaml") == DriftConfig()
    cfg = parse_drift({"bin_minutes": 10, "window_bins": 30}, "f.yaml")
    # unset: 3/4 of a bin's minutes and 2/3 of the window's bins, as for hourly means (45 of 60, 48 of 72)
    assert (cfg.min_minutes_per_bin, cfg.settings.min_bins) == (8, 20)
    assert (cfg.bin_ms, cfg.every_ms, cfg.slack_ms) == (600_000, 24 * 600_000, 300_000)


def test_shipped_file_pairs_only_the_colocated_pod() -> None:
    cfg, pairs = load_drift(SHIPPED, NETWORK)
    assert cfg.settings == DriftSettings()  # the shipped section spells out the defaults
    assert cfg.max_distance_km == 1.0 and cfg.every_bins == 24 and cfg.min_minutes_per_bin == 45
    # n-a03 is 3.1 km from n-a01: too far to share its air, so not watched
    assert {(p.station_id, p.parameter, p.reference_station_id) for p in pairs} == {("c-a11", "pm25", "c-a01"), ("c-a11", "pm10", "c-a01")}
    assert set(load_registry(SHIPPED, NETWORK).sensors) >= DEMO_LISTED  # the drift key does not disturb the registry
    wider = replace(cfg, max_distance_km=5.0)  # by distance alone, n-a03 would pair with n-a01
    assert pair_sensors(wider, FIXED, DEMO_LISTED) == (Pair("n-a03", "pm25", "n-a01", 3.132),)


@pytest.mark.parametrize(("section", "key", "reason"), [
    ("every", "drift", "must be a mapping"),
    ({"bin_size": 5}, "drift.bin_size", "unknown key"),
    ({"bin_minutes": 0}, "drift.bin_minutes", "integer >= 1, got 0"),
    ({"bin_minutes": 2000}, "drift.bin_minutes", "at most 1440"),
    ({"bin_minutes": True}, "drift.bin_minutes", "integer >= 1"),
    ({"window_bins": 2}, "drift.window_bins", "integer >= 3"),
    ({"window_bins": 10, "min_bins": 11}, "drift.min_bins", "at most window_bins (10)"),
    ({"bin_minutes": 10, "min_minutes_per_bin": 11}, "drift.min_minutes_per_bin", "at most bin_minutes (10)"),
    ({"every_bins": 0}, "drift.every_bins", "integer >= 1"),
    ({"slack_minutes": -1}, "drift.slack_minutes", "integer >= 0"),
    ({"gain_tolerance": 0}, "drift.gain_tolerance", "must be a number in"),
    ({"offset_tolerance": "3"}, "drift.offset_tolerance", "must be a number in"),
    ({"min_r2": 1.5}, "drift.min_r2", "in [0, 1]"),
    ({"max_distance_km": float("nan")}, "drift.max_distance_km", "must be a number"),
    ({"method": "huber"}, "drift.method", "'ols' or 'theil_sen'"),
    ({"pairs": {"station_id": "c-a08"}}, "drift.pairs", "must be a list"),
    ({"pairs": ["c-a08"]}, "drift.pairs[0]", "must be a mapping"),
    ({"pairs": [{"station_id": "c-a08", "parameter": "no2", "reference": "c-a07"}]}, "drift.pairs[0].reference", "unknown key"),
    ({"pairs": [{"station_id": "c-a08", "parameter": "nox", "reference_station_id": "c-a07"}]}, "drift.pairs[0].parameter", "unknown parameter"),
    ({"pairs": [{"station_id": "C A8", "parameter": "no2", "reference_station_id": "c-a07"}]}, "drift.pairs[0].station_id", "must be a station id"),
    ({"pairs": [{"station_id": "c-a08", "parameter": "no2", "reference_station_id": "c-a08"}]}, "drift.pairs[0].reference_station_id", "another station"),
    ({"pairs": [{"station_id": "c-a08", "parameter": "no2", "reference_station_id": "c-a07"}] * 2}, "drift.pairs[1]", "duplicate pair"),
])
def test_section_errors_name_file_key_and_reason(section: Any, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_drift(section, "cal.yaml")
    assert (err.value.file, err.value.key) == ("cal.yaml", key)
    assert reason in err.value.reason, err.value.reason


def test_nearest_unlisted_station_within_the_distance() -> None:
    cfg = parse_drift({"max_distance_km": 10}, "f.yaml")
    pairs = {p.sensor: p for p in pair_sensors(cfg, FIXED, DEMO_LISTED)}
    # n-a03 -> n-a01 3.1 km, s-a09 -> s-a10 9.9 km, c-a03 -> c-a01 8.5 km; n-a09's nearest (n-a08) is 11.0 km: not paired
    assert {k: (p.reference_station_id, round(p.distance_km, 1)) for k, p in pairs.items()} == {
        "c-a03/pm25": ("c-a01", 8.5), "n-a03/pm25": ("n-a01", 3.1), "s-a09/o3": ("s-a10", 9.9)}
    # a listed sensor is never a reference of its parameter: with n-a01/pm25 listed too, n-a03 goes to n-a02 (6.7 km) ...
    both = {p.sensor: p.reference_station_id for p in pair_sensors(cfg, FIXED, {"n-a03/pm25", "n-a01/pm25"})}
    assert both == {"n-a03/pm25": "n-a02", "n-a01/pm25": "n-a02"}
    # ... but a station listed for another parameter is still a reference of this one
    assert {p.sensor: p.reference_station_id for p in pair_sensors(cfg, FIXED, {"n-a03/pm25", "n-a01/no2"})}["n-a03/pm25"] == "n-a01"
    assert pair_sensors(parse_drift({"max_distance_km": 3.0}, "f.yaml"), FIXED, {"n-a03/pm25"}) == ()


def test_explicit_pair_overrides_the_nearest_and_may_lie_beyond_the_distance() -> None:
    cfg = parse_drift({"max_distance_km": 5, "pairs": [
        {"station_id": "c-a08", "parameter": "no2", "reference_station_id": "c-a07"},
        {"station_id": "n-a03", "parameter": "pm25", "reference_station_id": "n-a02"},
    ]}, "f.yaml")
    pairs = pair_sensors(cfg, FIXED, DEMO_LISTED)
    assert [(p.sensor, p.reference_station_id, p.basis) for p in pairs] == [
        ("c-a08/no2", "c-a07", "explicit"), ("n-a03/pm25", "n-a02", "explicit")]
    assert round(pairs[0].distance_km, 1) == 14.5


@pytest.mark.parametrize(("spec", "key", "reason"), [
    (PairSpec("x-a99", "no2", "c-a07"), "drift.pairs[0].station_id", "unknown station 'x-a99'"),
    (PairSpec("c-a08", "no2", "c-w01"), "drift.pairs[0].reference_station_id", "does not measure 'no2'"),
    (PairSpec("c-a07", "pm25", "c-a03"), "drift.pairs[0].reference_station_id", "c-a03 is a low-cost sensor of pm25"),
])
def test_explicit_pair_checked_against_network_and_registry(spec: PairSpec, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        pair_sensors(DriftConfig(pairs=(spec,)), FIXED, DEMO_LISTED, "cal.yaml")
    assert err.value.key == key and reason in err.value.reason, str(err.value)


def test_load_drift_names_the_file(tmp_path: Path) -> None:
    doc = yaml.safe_load(SHIPPED.read_text())
    doc["drift"]["window_bins"] = 24  # min_bins 48 left as it is
    f = tmp_path / "cal.yaml"
    f.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=rf"^{f}: drift.min_bins: must be at most window_bins \(24\), got 48$"):
        load_drift(f, NETWORK)


def test_a_colocated_pod_is_compared_with_its_partner_and_is_no_reference() -> None:
    """A pod beside n-a01 (the network's colocated_with): watched for every index parameter both measure,
    listed or not; never the reference of another sensor, however near."""
    pod = replace(FIXED.stations["n-a03"], id="n-a31", lat=49.4312, lon=17.4492, colocated_with="n-a01",
                  parameters=("pm25", "pm10", "temp", "rh"))
    net = Network(FIXED.regions, {**FIXED.stations, pod.id: pod}, FIXED.river)
    pairs = pair_sensors(parse_drift({"max_distance_km": 5}, "f.yaml"), net, {"n-a03/pm25", "n-a31/pm25"})
    assert [(p.sensor, p.reference_station_id, p.basis) for p in pairs] == [
        ("n-a03/pm25", "n-a01", "nearest"), ("n-a31/pm10", "n-a01", "colocated"), ("n-a31/pm25", "n-a01", "colocated")]
    assert pairs[1].distance_km < 0.05
    # with n-a01 listed for pm25 it is no reference: the pod is watched for pm10 only, and n-a03 does not take
    # the pod (30 m from n-a01, 3.1 km away): its nearest reference, n-a02, is 6.7 km away, beyond 5 km
    pairs = pair_sensors(parse_drift({"max_distance_km": 5}, "f.yaml"), net, {"n-a03/pm25", "n-a01/pm25"})
    assert [(p.sensor, p.reference_station_id) for p in pairs] == [("n-a01/pm25", "n-a02"), ("n-a31/pm10", "n-a01")]
