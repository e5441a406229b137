"""calibrate_minutes: the station-minute calibration the job's UDF runs, by known answers."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from calibration.registry import parse_registry
from calibration.station_minutes import calibrate_minutes

T0 = 1_795_000_000_000 // 60_000 * 60_000
MIN = 60_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat()


def registry(unlisted: str = "pass"):
    return parse_registry({"version": 1, "registry_id": "tt", "unlisted_sensors": unlisted, "sensors": [
        {"station_id": "a1", "parameter": "pm25", "models": [
            {"model_id": "lin", "version": 1, "effective_from": iso(T0), "type": "linear", "coefficients": {"gain": 0.5, "offset": 1.0}},
            {"model_id": "epa", "version": 2, "effective_from": iso(T0 + 2 * MIN), "type": "epa_purpleair_2021"}]},
        {"station_id": "a2", "parameter": "pm25", "models": [
            {"model_id": "ml", "version": 1, "effective_from": iso(T0), "type": "multilinear",
             "coefficients": {"gain": 1.0, "offset": 0.0, "covariates": {"temp": 0.5}}}]},
    ]}, "test")


def test_each_minute_by_the_version_in_effect_at_its_start_with_its_own_covariates() -> None:
    stations = np.array(["a1", "a1", "a1", "a2", "a3", "a1"], dtype=object)
    starts = np.array([T0 - MIN, T0, T0 + 2 * MIN, T0, T0, T0 + MIN])
    pm25 = np.array([10.0, 10.0, 10.0, 10.0, 10.0, np.nan])
    rh, temp = np.array([50.0] * 6), np.array([4.0, 4.0, 4.0, 6.0, 4.0, 4.0])
    out = calibrate_minutes(registry(), stations, starts, {"pm25": pm25, "no2": np.full(6, 7.0)}, {"rh": rh, "temp": temp})
    r = out["pm25"]
    # before the first version: missing (no value); linear; EPA 2021 0.524*10 - 0.0862*50 + 5.75; multilinear 10 + 0.5*6;
    # unlisted a3 passes; a minute without pm25 is neither calibrated nor missing
    assert np.isnan(r.value[0]) and r.missing[0] and r.model[0] is None
    assert r.value[1] == pytest.approx(6.0) and r.model[1] == "lin@1"
    assert r.value[2] == pytest.approx(0.524 * 10 - 0.0862 * 50 + 5.75) and r.model[2] == "epa@2"
    assert r.value[3] == pytest.approx(13.0) and r.model[3] == "ml@1"
    assert r.value[4] == 10.0 and r.model[4] is None and not r.missing[4]
    assert np.isnan(r.value[5]) and not r.missing[5] and r.model[5] is None
    # a parameter no sensor of the batch is listed for: as measured
    assert out["no2"].value.tolist() == [7.0] * 6 and not out["no2"].missing.any() and set(out["no2"].model) == {None}


def test_missing_covariate_is_calibration_missing_and_unlisted_flag_policy() -> None:
    stations = np.array(["a1", "a3"], dtype=object)
    starts = np.array([T0 + 2 * MIN, T0])
    out = calibrate_minutes(registry("flag"), stations, starts, {"pm25": np.array([10.0, 10.0])}, {"rh": np.array([np.nan, 50.0])})
    r = out["pm25"]
    assert r.missing.tolist() == [True, True]  # EPA without rh; a3 unlisted under 'flag'
    assert np.isnan(r.value).all()
    assert r.model[0] == "epa@2" and r.model[1] is None  # the model applied (and failed) is still named


def test_same_rows_in_any_batching_give_the_same_values() -> None:
    rng = np.random.default_rng(3)
    n = 500
    stations = rng.choice(np.array(["a1", "a2", "a3"], dtype=object), n)
    starts = T0 + rng.integers(-2, 5, n) * MIN
    values = {"pm25": rng.uniform(0, 80, n)}
    cov = {"rh": rng.uniform(20, 95, n), "temp": rng.uniform(-5, 25, n)}
    whole = calibrate_minutes(registry(), stations, starts, values, cov)["pm25"]
    for a, b in ((0, 137), (137, 138), (138, 500)):
        part = calibrate_minutes(registry(), stations[a:b], starts[a:b], {"pm25": values["pm25"][a:b]},
                                 {k: v[a:b] for k, v in cov.items()})["pm25"]
        assert np.array_equal(part.value, whole.value[a:b], equal_nan=True)
        assert part.model.tolist() == whole.model[a:b].tolist() and part.missing.tolist() == whole.missing[a:b].tolist()
