"""Drift against a co-located reference: a sensor whose gain drifts 20% over two
weeks yields a proposal whose coefficients recover the truth within 5%; no
proposal while the calibration holds; rolling fits agree with numpy's polyfit."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from calibration.drift import HOUR_MS, DriftSettings, fit_line, propose, rolling_ols
from calibration.models import Linear
from calibration.registry import ModelVersion
from schemas.models import validation_errors

START = int(datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp() * 1000)
DAYS = 14
OFFSET = 4.0  # the sensor's additive bias, ug/m3
CURRENT = ModelVersion("colocation-2026-09", 3, START - 30 * 24 * HOUR_MS, Linear(1.0, -OFFSET))  # right at t = 0


def simulate(days: int = DAYS, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hourly means: reference (small noise) and a sensor = g(t)*truth + 4 + noise, g from 1.0 to 1.2 over 14 days."""
    rng = np.random.default_rng(seed)
    h = np.arange(days * 24)
    truth = 25 + 12 * np.sin(2 * np.pi * h / 24) + rng.gamma(2.0, 6.0, h.size)  # diurnal cycle + episodes
    gain = 1.0 + 0.2 * h / (DAYS * 24)
    reference = truth + rng.normal(0, 0.5, h.size)
    sensor = gain * truth + OFFSET + rng.normal(0, 2.0, h.size)
    sensor[rng.choice(h.size, 10, replace=False)] = np.nan  # a few hours lost
    return START + h * HOUR_MS, sensor, reference, gain


@pytest.mark.parametrize("method", ["ols", "theil_sen"])
def test_twenty_percent_gain_drift_is_recovered_within_five_percent(method: str) -> None:
    hours, sensor, reference, gain = simulate()
    p = propose("n-a03", "pm25", "n-a01", hours, sensor, reference, CURRENT, settings=DriftSettings(method=method))
    assert p is not None
    assert validation_errors("calibration_proposal", p) == []
    # Truth at the window end (where the proposal takes effect): sensor = 1.2*c + 4, so the
    # correction is c = sensor/1.2 - 4/1.2: gain 0.8333, offset -3.333.
    g_end = 1.0 + 0.2 * (DAYS * 24) / (DAYS * 24)
    true_gain, true_offset = 1 / g_end, -OFFSET / g_end
    coeffs = p["proposed"]["coefficients"]
    assert abs(coeffs["gain"] - true_gain) / true_gain < 0.05
    # An offset near zero has no meaningful relative error: judge it against the window's mean level.
    window = hours >= p["window_start"]
    assert abs(coeffs["offset"] - true_offset) < 0.05 * np.nanmean(reference[window])
    # and what counts: the proposed correction of a noise-free end-of-window reading is within 5%
    c = np.linspace(10, 80, 15)
    corrected = coeffs["gain"] * (g_end * c + OFFSET) + coeffs["offset"]
    assert np.all(np.abs(corrected - c) / c < 0.05)
    # drift judged on the current calibration (sensor - 4 = g*c): its gain ~ 1.18, the tolerance 0.1
    assert p["drift"]["gain"] == pytest.approx(np.mean(gain[-72:]), abs=0.03)
    assert p["replaces"] == {"model_id": "colocation-2026-09", "version": 3}
    assert p["proposed"]["version"] == 4 and p["proposed"]["type"] == "linear"
    assert p["window_end"] == int(hours[-1]) + HOUR_MS == p["proposed"]["effective_from"]
    assert p["window_start"] == p["window_end"] - 72 * HOUR_MS
    assert p["fit"]["n"] == np.count_nonzero(window & np.isfinite(sensor))
    assert p["fit"]["r2"] > 0.9 and 1.5 < p["fit"]["residual_sd"] < 3.0  # the simulated noise sd is 2


def test_no_proposal_while_within_tolerance() -> None:
    hours, sensor, reference, _ = simulate()
    # first 4 days: the window's mean gain is ~1.036, inside the 10% tolerance
    n = 4 * 24
    assert propose("n-a03", "pm25", "n-a01", hours[:n], sensor[:n], reference[:n], CURRENT) is None
    # the same data against a wrong current model (offset not removed) does drift: offset +4 > 3
    wrong = ModelVersion("raw", 1, START, Linear(1.0, 0.0))
    p = propose("n-a03", "pm25", "n-a01", hours[:n], sensor[:n], reference[:n], wrong)
    assert p is not None and "offset +" in p["reason"] and "gain " not in p["reason"]


def test_no_proposal_from_too_few_hours_or_a_poor_fit() -> None:
    hours, sensor, reference, _ = simulate()
    assert propose("n-a03", "pm25", "n-a01", hours[-40:], sensor[-40:], reference[-40:], CURRENT) is None  # < 48 h
    unrelated = np.random.default_rng(1).uniform(0, 80, hours.size)
    assert propose("n-a03", "pm25", "n-a01", hours, unrelated, reference, CURRENT) is None  # r2 ~ 0


def test_proposal_id_is_deterministic() -> None:
    hours, sensor, reference, _ = simulate()
    a = propose("n-a03", "pm25", "n-a01", hours, sensor, reference, CURRENT)
    b = propose("n-a03", "pm25", "n-a01", hours, sensor, reference, CURRENT)
    c = propose("n-a03", "pm25", "n-a01", hours[:-24], sensor[:-24], reference[:-24], CURRENT)
    assert a == b
    assert a["proposal_id"] != c["proposal_id"]
    assert a["proposal_id"].startswith("cp-") and a["proposed"]["model_id"] == "drift-" + a["proposal_id"]


def test_without_a_current_model_the_raw_values_are_judged() -> None:
    hours, sensor, reference, _ = simulate()
    p = propose("n-a03", "pm25", "n-a01", hours, sensor, reference, None)
    assert p is not None and p["replaces"] is None and p["proposed"]["version"] == 1


def test_fit_line_exact_and_degenerate() -> None:
    f = fit_line([1.0, 2.0, 3.0, np.nan, 5.0], [3.0, 5.0, 7.0, 100.0, 11.0])  # y = 2x + 1, NaN pair skipped
    assert (f.slope, f.intercept, f.r2, f.n) == pytest.approx((2.0, 1.0, 1.0, 4))
    assert fit_line([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) is None
    assert fit_line([1.0, 2.0], [1.0, 2.0]) is None


def test_rolling_ols_matches_polyfit_per_window() -> None:
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 50, 200)
    y = 1.3 * x + 2 + rng.normal(0, 1, 200)
    x[[10, 11, 50]] = np.nan
    out = rolling_ols(x, y, 24)
    for end in (5, 30, 60, 199):
        lo = max(0, end - 23)
        ok = np.isfinite(x[lo : end + 1])
        slope, intercept = np.polyfit(x[lo : end + 1][ok], y[lo : end + 1][ok], 1)
        r = np.corrcoef(x[lo : end + 1][ok], y[lo : end + 1][ok])[0, 1]
        assert out["slope"][end] == pytest.approx(slope, rel=1e-9)
        assert out["intercept"][end] == pytest.approx(intercept, rel=1e-9, abs=1e-9)
        assert out["r2"][end] == pytest.approx(r * r, rel=1e-9)
        assert out["n"][end] == ok.sum()
    assert np.isnan(out["slope"][1])  # two points are no fit


def test_bins_of_any_length_give_the_same_fit_on_their_own_grid() -> None:
    """The same points read as 10-min bins: the window is 72 bins = 12 h, the coefficients are the hourly ones."""
    hours, sensor, reference, _ = simulate()
    hourly = propose("n-a03", "pm25", "n-a01", hours, sensor, reference, CURRENT)
    starts = START + np.arange(hours.size) * 600_000
    short = propose("n-a03", "pm25", "n-a01", starts, sensor, reference, CURRENT, settings=DriftSettings(bin_minutes=10))
    assert hourly is not None and short is not None
    assert short["window_end"] == int(starts[-1]) + 600_000 and short["window_start"] == short["window_end"] - 72 * 600_000
    assert short["proposed"]["coefficients"] == hourly["proposed"]["coefficients"] and short["fit"] == hourly["fit"]
    assert short["proposal_id"] != hourly["proposal_id"]  # another window
    assert short["proposed"]["description"].endswith("bins of 10 min")
    with pytest.raises(ValueError, match="min_bins <= window_bins"):
        DriftSettings(window_bins=24, min_bins=48)
