"""Factor model: recovery of known profiles, determinism, robust mode, exact projection, Q/Qexp aids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from apportion.pmf import factor_count_aids, fit, project, q_expected
from apportion.synthetic import factor_data


def _matched_corr(est: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per true factor, correlation with its Hungarian-matched estimate (rows are factors)."""
    p = true.shape[0]
    c = np.corrcoef(est, true)[:p, p:]
    rows, cols = linear_sum_assignment(-c)
    return c[rows, cols]


def test_recovers_known_profiles_and_contributions() -> None:
    d = factor_data(n=300, m=12, k=3, seed=4)
    r = fit(d.X, d.U, 3, seed=0, restarts=3)
    assert _matched_corr(r.F, d.F).min() > 0.9
    assert _matched_corr(r.G.T, d.G.T).min() > 0.9
    assert np.allclose(r.F.sum(axis=1), 1.0)
    assert (r.F >= 0).all() and (r.G >= 0).all()
    # noise was drawn with sd U, so a right model leaves Q near its expectation
    assert 0.8 < r.Q / r.Q_exp < 1.2


def test_same_seed_same_factors() -> None:
    d = factor_data(n=200, m=10, k=3, seed=1)
    a = fit(d.X, d.U, 3, seed=7, restarts=2)
    b = fit(d.X, d.U, 3, seed=7, restarts=2)
    assert np.array_equal(a.F, b.F) and np.array_equal(a.G, b.G) and a.restart_Q == b.restart_Q
    c = fit(d.X, d.U, 3, seed=8, restarts=2)
    assert c.restart_Q != a.restart_Q  # the seed really drives the starts


def test_robust_mode_resists_outliers() -> None:
    d = factor_data(n=300, m=12, k=3, seed=2, outliers=0.02)
    robust = fit(d.X, d.U, 3, seed=0, restarts=3, robust=True)
    assert _matched_corr(robust.F, d.F).min() > 0.9
    # the robust objective caps each outlier's weight, so it is far below Q(true) here
    assert robust.Q_robust < 0.5 * robust.Q


def test_projection_is_exact_on_noise_free_rows() -> None:
    d = factor_data(n=50, m=12, k=3, seed=3)
    clean = d.G[:20] @ d.F
    g = project(clean, d.F, d.U[:20])
    assert np.allclose(g, d.G[:20], rtol=1e-8, atol=1e-8)


def test_factor_count_aids_point_at_the_true_count() -> None:
    d = factor_data(n=240, m=12, k=3, seed=5)
    aids = {a.p: a for a in factor_count_aids(d.X, d.U, [2, 3, 4], restarts=2)}
    assert aids[2].Q_ratio > 1.5  # too few factors: residuals far beyond the uncertainties
    assert 0.8 < aids[3].Q_ratio < 1.2
    assert aids[2].frac_scaled_over_3 > aids[3].frac_scaled_over_3
    assert aids[3].Q_exp == q_expected(240, 12, 3) == 240 * 12 - 3 * (240 + 12)


def test_bad_input_is_refused() -> None:
    d = factor_data(n=20, m=5, k=2, seed=0)
    with pytest.raises(ValueError):
        fit(d.X, np.zeros_like(d.U), 2)
