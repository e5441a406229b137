"""Calibration models and unit conversions: known answers worked by hand from the
formulas (STANDARDS.md "Low-cost PM sensor correction"; ideal gas law), not from
the implementation's output."""

from __future__ import annotations

import numpy as np
import pytest

from calibration import units
from calibration.models import (
    EPA_2022_BREAKPOINTS,
    Chain,
    EpaPurpleAir2021,
    EpaPurpleAir2022,
    Linear,
    ModelParamError,
    Multilinear,
    Polynomial,
    UnitConversion,
    model_from_dict,
    model_to_dict,
)

def rh(n: int, value: float = 50.0) -> dict[str, np.ndarray]:
    return {"rh": np.full(n, value)}


def test_linear_and_polynomial() -> None:
    assert Linear(2.0, -1.0).apply([0.0, 1.5, np.nan]).tolist()[:2] == [-1.0, 2.0]
    assert np.isnan(Linear(2.0, -1.0).apply([np.nan])[0])
    # 0.8 + 0.62*100 + 0.0011*100^2 = 0.8 + 62 + 11 = 73.8 ; at 0: 0.8
    np.testing.assert_allclose(Polynomial((0.8, 0.62, 0.0011)).apply([100.0, 0.0]), [73.8, 0.8], rtol=1e-12)


def test_multilinear_uses_each_covariate_and_needs_all() -> None:
    m = Multilinear(1.05, -2.0, (("rh", -0.08), ("temp", 0.15)))
    # 1.05*50 - 2 - 0.08*60 + 0.15*20 = 52.5 - 2 - 4.8 + 3 = 48.7
    np.testing.assert_allclose(m.apply([50.0], {"rh": [60.0], "temp": [20.0]}), [48.7], rtol=1e-12)
    assert np.isnan(m.apply([50.0], {"rh": [60.0]})[0])  # temp absent
    assert np.isnan(m.apply([50.0], {"rh": [60.0], "temp": [np.nan]})[0])
    assert m.covariates == ("rh", "temp")


def test_epa_2021_known_values_and_clip() -> None:
    m = EpaPurpleAir2021()
    # 0.524*20 - 0.0862*50 + 5.75 = 10.48 - 4.31 + 5.75 = 11.92
    # 0.524*100 - 0.0862*20 + 5.75 = 52.4 - 1.724 + 5.75 = 56.426
    np.testing.assert_allclose(m.apply([20.0, 100.0], {"rh": [50.0, 20.0]}), [11.92, 56.426], rtol=1e-12)
    # 0 - 0.0862*90 + 5.75 = -2.008 -> clipped to 0
    assert m.apply([0.0], rh(1, 90.0)).tolist() == [0.0]
    assert np.isnan(m.apply([20.0], {"rh": [np.nan]})[0])
    assert np.isnan(m.apply([20.0])[0])  # no rh in the batch at all


# PA, expected at RH 50, worked by hand (0.0862*50 = 4.31; -4.31 + 5.75 = 1.44):
EPA_2022_VECTORS = [
    (10.0, 0.524 * 10 + 1.44),  # 6.68, first segment = 2021 form
    (29.0, 0.524 * 29 + 1.44),  # 16.636
    (30.0, 17.16),  # w = 0: 0.524*30 + 1.44
    (40.0, 27.64),  # w = 0.5: (0.393 + 0.262)*40 = 26.2, + 1.44
    (50.0, 40.74),  # 0.786*50 + 1.44
    (100.0, 80.04),  # 0.786*100 + 1.44
    (210.0, 166.50),  # w = 0: 0.786*210 + 1.44
    # w = 0.5: 0.738*235 = 173.43; -4.31*0.5 = -2.155; 2.966*0.5 = 1.483; 5.75*0.5 = 2.875;
    # 8.84e-4*235^2*0.5 = 24.40945 -> 200.04245
    (235.0, 200.04245),
    (260.0, 242.1244),  # 2.966 + 0.69*260 + 8.84e-4*67600 = 2.966 + 179.4 + 59.7584
    (300.0, 289.526),  # 2.966 + 207 + 79.56
]


@pytest.mark.parametrize(("pa", "expected"), EPA_2022_VECTORS)
def test_epa_2022_known_values(pa: float, expected: float) -> None:
    np.testing.assert_allclose(EpaPurpleAir2022().apply([pa], rh(1)), [expected], rtol=1e-9)


@pytest.mark.parametrize("bp", EPA_2022_BREAKPOINTS)
@pytest.mark.parametrize("humidity", [10.0, 50.0, 95.0])
def test_epa_2022_continuous_at_each_breakpoint(bp: float, humidity: float) -> None:
    eps = 1e-7
    below, at, above = EpaPurpleAir2022().apply([bp - eps, bp, bp + eps], rh(3, humidity))
    assert abs(below - at) < 1e-5 and abs(above - at) < 1e-5
    # and the slope is finite there (no jump hidden below the tolerance): a step of 1 moves < 2 ug/m3
    assert abs(EpaPurpleAir2022().apply([bp + 1.0], rh(1, humidity))[0] - at) < 2.0


def test_epa_2022_segment_choice_at_the_top_breakpoint() -> None:
    # From 260 on RH does not enter: a missing RH still gives a value; just below it does not.
    out = EpaPurpleAir2022().apply([259.99, 260.0, 400.0], {"rh": [np.nan] * 3})
    assert np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [242.1244, 2.966 + 0.69 * 400 + 8.84e-4 * 160000], rtol=1e-12)
    # Below 30 the 2022 form equals the 2021 correction; at 100 it does not (0.786 vs 0.524).
    x, cov = np.array([5.0, 25.0, 100.0]), rh(3, 40.0)
    same = EpaPurpleAir2022().apply(x, cov) == EpaPurpleAir2021().apply(x, cov)
    assert same.tolist() == [True, True, False]


def test_epa_2022_clips_negatives() -> None:
    # 0.524*1 - 0.0862*100 + 5.75 = -2.346 -> 0
    assert EpaPurpleAir2022().apply([1.0], rh(1, 100.0)).tolist() == [0.0]


# --- unit conversions --------------------------------------------------------------------
R_L_ATM = 0.082057366  # L atm / (mol K): an independent route to the molar volume at 1 atm


def test_known_conversion_factors() -> None:
    vm_25c = R_L_ATM * 298.15  # 24.4654 L/mol
    assert units.REFERENCE_STATES["gb3095-2018"].molar_volume_l == pytest.approx(vm_25c, rel=1e-7)
    assert units.conversion_factor("no2", "ppb", "ug/m3") == pytest.approx(46.005 / vm_25c, rel=1e-7)  # 1.8804
    assert units.conversion_factor("co", "ppm", "mg/m3", "epa") == pytest.approx(28.010 / vm_25c, rel=1e-7)  # 1.1449
    # before the 2018 amendment, 273 K: the textbook SO2 factor 2.86 ug/m3 per ppb
    assert units.conversion_factor("so2", "ppb", "ug/m3", "gb3095-2012") == pytest.approx(64.058 / (R_L_ATM * 273), rel=1e-7)
    assert units.conversion_factor("so2", "ppb", "ug/m3", "gb3095-2012") == pytest.approx(2.86, abs=0.005)
    # EU, 20 degC: the factors the EEA quotes, O3 1.996 and NO2 1.913 ug/m3 per ppb
    assert units.conversion_factor("o3", "ppb", "ug/m3", "eu-2008-50") == pytest.approx(1.996, abs=1e-3)
    assert units.conversion_factor("no2", "ppb", "ug/m3", "eu-2008-50") == pytest.approx(1.913, abs=1e-3)
    # same kind needs no molar mass
    assert units.conversion_factor("pm25", "mg/m3", "ug/m3") == 1000.0
    assert units.conversion_factor("anything", "ppm", "ppb") == 1000.0


@pytest.mark.parametrize("state", sorted(units.REFERENCE_STATES))
@pytest.mark.parametrize("species", sorted(units.MOLAR_MASS_G_PER_MOL))
def test_round_trips(state: str, species: str) -> None:
    x = np.random.default_rng(7).uniform(0, 500, 100)
    for a, b in (("ppb", "ug/m3"), ("ppm", "mg/m3"), ("ppb", "mg/m3"), ("ppm", "ug/m3")):
        back = units.convert(units.convert(x, species, a, b, state), species, b, a, state)
        np.testing.assert_allclose(back, x, rtol=1e-13)


def test_conversion_errors() -> None:
    with pytest.raises(ValueError, match="unknown unit 'ppt'"):
        units.conversion_factor("no2", "ppt", "ug/m3")
    with pytest.raises(ValueError, match="no molar mass for 'pm25'"):
        units.conversion_factor("pm25", "ppb", "ug/m3")
    with pytest.raises(ValueError, match="unknown reference state 'stp'"):
        units.conversion_factor("no2", "ppb", "ug/m3", "stp")


def test_unit_conversion_and_chain_models() -> None:
    vm_25c = R_L_ATM * 298.15
    conv = UnitConversion("no2", "ppb", "ug/m3", "gb3095-2018")
    np.testing.assert_allclose(conv.apply([10.0]), [10.0 * 46.005 / vm_25c], rtol=1e-7)
    chain = Chain((Linear(1.1, 0.0), conv))  # 10 ppb -> 11 ppb -> 11 * 1.8804
    np.testing.assert_allclose(chain.apply([10.0]), [11.0 * 46.005 / vm_25c], rtol=1e-7)


# --- construction from registry documents ------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "linear", "coefficients": {"gain": 0.9, "offset": -1.5}},
        {"type": "multilinear", "coefficients": {"gain": 1.0, "offset": 0.0, "covariates": {"temp": 0.1, "rh": -0.2}}},
        {"type": "polynomial", "coefficients": {"coefficients": [1.0, 0.5, 0.001]}},
        {"type": "epa_purpleair_2021", "coefficients": {}},
        {"type": "epa_purpleair_2022", "coefficients": {}},
        {"type": "unit_conversion", "coefficients": {"species": "co", "from_unit": "ppm", "to_unit": "mg/m3", "reference_state": "epa"}},
        {"type": "chain", "coefficients": {"steps": [{"type": "linear", "coefficients": {"gain": 1.0, "offset": 1.0}},
                                                     {"type": "polynomial", "coefficients": {"coefficients": [0.0, 2.0]}}]}},
    ],
)
def test_model_dict_round_trip(doc: dict) -> None:
    model = model_from_dict(doc)
    assert model_from_dict(model_to_dict(model)) == model
    assert model.kind == doc["type"]


@pytest.mark.parametrize(
    ("doc", "key", "reason"),
    [
        ({"type": "cubic"}, "type", "unknown model type 'cubic'"),
        ({"type": "linear", "coefficients": {"gain": 1.0}}, "coefficients.offset", "is required"),
        ({"type": "linear", "coefficients": {"gain": True, "offset": 0}}, "coefficients.gain", "must be a number"),
        ({"type": "linear", "coefficients": {"gain": 1, "offset": 0, "slope": 2}}, "coefficients.slope", "unknown coefficient"),
        ({"type": "linear", "coefficients": {"gain": float("nan"), "offset": 0}}, "coefficients.gain", "must be finite"),
        ({"type": "multilinear", "coefficients": {"gain": 1, "offset": 0, "covariates": {"dew": 1}}}, "coefficients.covariates.dew", "unknown covariate"),
        ({"type": "multilinear", "coefficients": {"gain": 1, "offset": 0}}, "coefficients.covariates", "non-empty mapping"),
        ({"type": "polynomial", "coefficients": {"coefficients": [1, "a"]}}, "coefficients.coefficients[1]", "must be a number"),
        ({"type": "epa_purpleair_2021", "coefficients": {"gain": 1}}, "coefficients.gain", "allowed: none"),
        ({"type": "unit_conversion", "coefficients": {"species": "pm25", "from_unit": "ppb", "to_unit": "ug/m3"}}, "coefficients.species", "no molar mass"),
        ({"type": "unit_conversion", "coefficients": {"species": "no2", "from_unit": "ppb", "to_unit": "g/m3"}}, "coefficients.to_unit", "unknown unit"),
        ({"type": "chain", "coefficients": {"steps": [{"type": "linear", "coefficients": {"gain": 1, "offset": 0}},
                                                      {"type": "linear", "coefficients": {"offset": 0}}]}},
         "coefficients.steps[1].coefficients.gain", "is required"),
    ],
)
def test_model_errors_name_the_key(doc: dict, key: str, reason: str) -> None:
    with pytest.raises(ModelParamError) as info:
        model_from_dict(doc)
    assert info.value.key == key
    assert reason in info.value.reason
