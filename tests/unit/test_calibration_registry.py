"""Calibration registry: validation errors (file: key: reason), the as-of lookup at
and just before effective_from, batch calibration, replay determinism, and the
control-topic messages."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from calibration.models import EpaPurpleAir2021, EpaPurpleAir2022, Linear
from calibration.registry import load_registry, parse_registry, registry_from_messages
from jointwatch.settings import REPO_ROOT
from schemas.models import validation_errors
from schemas.errors import ConfigError
from schemas.network import load_network

T1 = "2026-01-01T00:00:00+01:00"  # 2025-12-31T23:00Z
T2 = "2026-06-15T00:00:00+02:00"  # 2026-06-14T22:00Z
T1_MS = int(datetime(2025, 12, 31, 23, tzinfo=timezone.utc).timestamp() * 1000)
T2_MS = int(datetime(2026, 6, 14, 22, tzinfo=timezone.utc).timestamp() * 1000)
NETWORK = load_network(REPO_ROOT / "config" / "network.yaml")


def doc() -> dict:
    return {
        "version": 1,
        "registry_id": "test",
        "unlisted_sensors": "pass",
        "sensors": [
            {"station_id": "n-a01", "parameter": "no2", "models": [
                {"model_id": "lin-a", "version": 1, "effective_from": T1, "type": "linear", "coefficients": {"gain": 2.0, "offset": 1.0}},
                {"model_id": "lin-b", "version": 2, "effective_from": T2, "type": "linear", "coefficients": {"gain": 3.0, "offset": 0.0}},
            ]},
            # a second sensor whose only version starts 5 ms after the first one's v1
            {"station_id": "n-a02", "parameter": "no2", "models": [
                {"model_id": "lin-c", "version": 1, "effective_from": "2025-12-31T23:00:00.005Z", "type": "linear", "coefficients": {"gain": 10.0, "offset": 0.0}},
            ]},
            {"station_id": "n-a03", "parameter": "pm25", "models": [
                {"model_id": "epa21", "version": 1, "effective_from": T1, "type": "epa_purpleair_2021"},
            ]},
        ],
    }


def test_effective_from_is_parsed_to_utc_ms() -> None:
    reg = parse_registry(doc(), "r.yaml")
    versions = reg.sensors["n-a01/no2"].versions
    assert [v.effective_from for v in versions] == [T1_MS, T2_MS]
    assert reg.sensors["n-a02/no2"].versions[0].effective_from == T1_MS + 5


def test_as_of_lookup_at_and_just_before_effective_from() -> None:
    reg = parse_registry(doc(), "r.yaml")
    st = ["n-a01"] * 5 + ["n-a02"] * 3 + ["x-a99"]
    pa = ["no2"] * 9
    t = [T1_MS - 1, T1_MS, T2_MS - 1, T2_MS, T2_MS + 10**11, T1_MS, T1_MS + 4, T1_MS + 5, T2_MS]
    codes = reg.sensor_codes(st, pa)
    entries = reg.lookup(codes, t)
    got = [(reg.entries[e].model_id, reg.entries[e].version) if e >= 0 else None for e in entries]
    assert got == [
        None,  # 1 ms before the first version: nothing in effect
        ("lin-a", 1),  # exactly at effective_from
        ("lin-a", 1),  # 1 ms before version 2
        ("lin-b", 2),  # exactly at version 2's effective_from
        ("lin-b", 2),
        None,  # n-a02 starts 5 ms later: n-a01's entries must not leak into it
        None,
        ("lin-c", 1),
        None,  # not in the registry
    ]
    # the scalar path agrees
    assert reg.sensors["n-a01/no2"].at(T2_MS - 1).version == 1
    assert reg.sensors["n-a01/no2"].at(T1_MS - 1) is None


def test_calibrate_batch_values_provenance_and_missing() -> None:
    reg = parse_registry(doc(), "r.yaml")
    st = np.array(["n-a01", "n-a01", "n-a01", "n-a03", "n-a03", "c-a01", "n-a03"])
    pa = np.array(["no2", "no2", "no2", "pm25", "pm25", "no2", "pm25"])
    t = np.array([T1_MS - 1, T1_MS, T2_MS, T1_MS, T1_MS, T1_MS, T1_MS - 1])
    raw = np.array([10.0, 10.0, 10.0, 20.0, 20.0, 7.0, 20.0])
    rh = np.array([np.nan, np.nan, np.nan, 50.0, np.nan, np.nan, 50.0])
    out = reg.calibrate(reg.sensor_codes(st, pa), t, raw, {"rh": rh})
    # 2*10+1 = 21; 3*10 = 30; EPA 2021 at PA 20, RH 50 = 11.92; unlisted c-a01 passes 7.0
    np.testing.assert_allclose(out.value, [np.nan, 21.0, 30.0, 11.92, np.nan, 7.0, np.nan], rtol=1e-12)
    assert out.model_id.tolist() == ["", "lin-a", "lin-b", "epa21", "epa21", "", ""]
    assert out.version.tolist() == [0, 1, 2, 1, 1, 0, 0]
    # before the first version; EPA without RH; before the first version
    assert out.missing.tolist() == [True, False, False, False, True, False, True]


def test_unlisted_flag_marks_every_unlisted_sensor_missing() -> None:
    d = doc()
    d["unlisted_sensors"] = "flag"
    reg = parse_registry(d, "r.yaml")
    out = reg.calibrate(reg.sensor_codes(["c-a01", "n-a01"], ["no2", "no2"]), [T2_MS, T2_MS], [7.0, 1.0])
    assert out.missing.tolist() == [True, False]
    assert np.isnan(out.value[0]) and out.value[1] == 3.0


def test_replay_gives_identical_output_whatever_the_order_and_batching() -> None:
    reg = parse_registry(doc(), "r.yaml")
    rng = np.random.default_rng(3)
    n = 5000
    st = rng.choice(["n-a01", "n-a02", "n-a03", "c-a01"], n)
    pa = np.where(st == "n-a03", "pm25", "no2")
    t = rng.integers(T1_MS - 10, T2_MS + 10, n)
    raw = rng.uniform(0, 300, n)
    rh = rng.uniform(10, 90, n)
    first = reg.calibrate(reg.sensor_codes(st, pa), t, raw, {"rh": rh})
    perm = rng.permutation(n)
    shuffled = reg.calibrate(reg.sensor_codes(st[perm], pa[perm]), t[perm], raw[perm], {"rh": rh[perm]})
    halves = [reg.calibrate(reg.sensor_codes(st[s], pa[s]), t[s], raw[s], {"rh": rh[s]}) for s in (slice(0, 1234), slice(1234, n))]
    for field in ("value", "model_id", "version", "missing"):
        a = getattr(first, field)
        assert np.array_equal(getattr(shuffled, field), a[perm], equal_nan=field == "value")
        assert np.array_equal(np.concatenate([getattr(h, field) for h in halves]), a, equal_nan=field == "value")
    # and each reading equals its own scalar computation
    for i in rng.choice(n, 50, replace=False):
        s = reg.sensors.get(f"{st[i]}/{pa[i]}")
        v = s.at(int(t[i])) if s else None
        if s is None:
            expected = raw[i]
        elif v is None:
            expected = np.nan
        else:
            expected = v.model.apply([raw[i]], {"rh": [rh[i]]})[0]
        assert first.value[i] == pytest.approx(expected, nan_ok=True)


def test_identical_models_share_a_group() -> None:
    d = doc()
    d["sensors"].append({"station_id": "n-a04", "parameter": "pm25", "models": [
        {"model_id": "epa21", "version": 1, "effective_from": T1, "type": "epa_purpleair_2021"}]})
    reg = parse_registry(d, "r.yaml")
    assert reg._models.count(EpaPurpleAir2021()) == 1
    assert Linear(2.0, 1.0) in reg._models and EpaPurpleAir2022() not in reg._models


def mutate(path: list, value: object) -> dict:
    d = copy.deepcopy(doc())
    target = d
    for k in path[:-1]:
        target = target[k]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return d


DELETE = object()
M0 = ["sensors", 0, "models", 0]
ERROR_CASES = [
    (mutate(["version"], 2), "version", "must be 1"),
    (mutate(["registry_id"], "Bad Id"), "registry_id", "must match"),
    (mutate(["unlisted_sensors"], "ignore"), "unlisted_sensors", "must be 'pass' or 'flag'"),
    (mutate(["sensor"], []), "sensor", "unknown key"),
    (mutate(["sensors", 0, "parameter"], "pm1"), "sensors[0].parameter", "unknown parameter 'pm1'"),
    (mutate(["sensors", 0, "station_id"], "N_A01"), "sensors[0].station_id", "must match"),
    (mutate(["sensors", 0, "models"], []), "sensors[0].models", "non-empty list"),
    (mutate([*M0, "version"], 0), "sensors[0].models[0].version", "integer >= 1"),
    (mutate([*M0, "version"], "1"), "sensors[0].models[0].version", "integer >= 1"),
    (mutate([*M0, "model_id"], ""), "sensors[0].models[0].model_id", "is required"),
    (mutate([*M0, "effective_from"], "2026-01-01T00:00:00"), "sensors[0].models[0].effective_from", "has no zone offset"),
    (mutate([*M0, "effective_from"], "yesterday"), "sensors[0].models[0].effective_from", "not ISO-8601"),
    (mutate([*M0, "effective_from"], DELETE), "sensors[0].models[0].effective_from", "is required"),
    (mutate([*M0, "effective"], T1), "sensors[0].models[0].effective", "unknown key"),
    (mutate([*M0, "type"], "spline"), "sensors[0].models[0].type", "unknown model type 'spline'"),
    (mutate([*M0, "coefficients"], {"gain": 1}), "sensors[0].models[0].coefficients.offset", "is required"),
    (mutate(["sensors", 0, "models", 1, "version"], 1), "sensors[0].models[1].version", "must be greater than the previous entry's 1"),
    (mutate(["sensors", 0, "models", 1, "effective_from"], T1), "sensors[0].models[1].effective_from", "must be later than version 1's"),
    (mutate(["sensors", 1, "station_id"], "n-a01"), "sensors[1]", "duplicate sensor 'n-a01/no2'"),
]


@pytest.mark.parametrize(("d", "key", "reason"), ERROR_CASES, ids=[c[1] + ":" + c[2] for c in ERROR_CASES])
def test_validation_errors_name_file_key_and_reason(d: dict, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_registry(d, "reg.yaml")
    assert (info.value.file, info.value.key) == ("reg.yaml", key)
    assert reason in info.value.reason
    assert str(info.value).startswith(f"reg.yaml: {key}: ")


def test_network_checks() -> None:
    parse_registry(doc(), "r.yaml", NETWORK)  # the fixture's stations exist and measure what it says
    with pytest.raises(ConfigError, match=r"r.yaml: sensors\[0\].station_id: unknown station 'z-a01'"):
        parse_registry(mutate(["sensors", 0, "station_id"], "z-a01"), "r.yaml", NETWORK)
    with pytest.raises(ConfigError, match=r"sensors\[0\].parameter: station n-a01 does not measure 'ph'"):
        parse_registry(mutate(["sensors", 0, "parameter"], "ph"), "r.yaml", NETWORK)


def test_yaml_file_timestamps_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "cal.yaml"
    # unquoted: YAML itself makes a datetime; with a zone it is accepted
    f.write_text("version: 1\nregistry_id: t1\nsensors:\n- station_id: n-a01\n  parameter: no2\n  models:\n"
                 "  - {model_id: a, version: 1, effective_from: 2026-01-01T00:00:00+01:00, type: linear, coefficients: {gain: 1, offset: 0}}\n")
    assert load_registry(f).sensors["n-a01/no2"].versions[0].effective_from == T1_MS
    f.write_text(f.read_text().replace("2026-01-01T00:00:00+01:00", "2026-01-01"))
    with pytest.raises(ConfigError, match=r"sensors\[0\].models\[0\].effective_from: 2026-01-01 is a date"):
        load_registry(f)
    with pytest.raises(ConfigError, match="<file>: does not exist"):
        load_registry(tmp_path / "missing.yaml")


def test_messages_validate_and_rebuild_the_registry() -> None:
    reg = parse_registry(doc(), "r.yaml")
    msgs = reg.messages()
    assert [m["sensor"] for m in msgs] == ["n-a01/no2", "n-a02/no2", "n-a03/pm25"]
    for m in msgs:
        assert validation_errors("calibration_model", m) == []
    assert msgs[0]["models"][1]["effective_from"] == T2_MS
    rebuilt = registry_from_messages(msgs, "test", "pass")
    assert rebuilt == reg
    # a later message for a sensor replaces the earlier one (compacted-topic semantics)
    newer = copy.deepcopy(msgs[0])
    newer["models"] = newer["models"][:1]
    assert len(registry_from_messages([*msgs, newer], "test").sensors["n-a01/no2"].versions) == 1


def test_shipped_demo_registry_loads_against_the_network() -> None:
    reg = load_registry(REPO_ROOT / "config" / "calibration.yaml", NETWORK)
    kinds = [v.model.kind for v in reg.entries]
    assert kinds.count("epa_purpleair_2021") + kinds.count("epa_purpleair_2022") >= 3
    assert {"linear", "multilinear"} <= set(kinds)
    assert reg.unlisted == "pass"
    for m in reg.messages():
        assert validation_errors("calibration_model", m) == []


def test_registry_refuses_entries_out_of_order() -> None:
    from dataclasses import replace

    from calibration.registry import Registry

    reg = parse_registry(doc(), "r.yaml")
    s = reg.sensors["n-a01/no2"]
    swapped = {**reg.sensors, s.key: replace(s, versions=s.versions[::-1])}
    with pytest.raises(ValueError, match="strictly increasing effective_from"):
        Registry("test", "pass", swapped)
