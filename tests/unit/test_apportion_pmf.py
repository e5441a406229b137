"""Factor model: recovery of known profiles, determinism, robust mode, exact projection, Q/Qexp aids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from apportion.pmf import _add_outer, _run, _sweep, factor_count_aids, fit, project, q_expected
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


def test_rank_one_update_in_place_over_row_blocks() -> None:
    rng = np.random.default_rng(0)
    E = rng.normal(size=(900, 20))  # 18000 cells: more than one BLAS row block
    want = E + 0.5 * np.outer(np.arange(900.0), np.ones(20))
    before = E.ctypes.data
    _add_outer(E, np.arange(900.0), np.ones(20), 0.5)
    assert E.ctypes.data == before and np.allclose(E, want)


def test_extrapolated_sweeps_reach_the_optimum_of_plain_sweeps() -> None:
    """Extrapolation may only change how fast the sweeps get there, not where: from the same start, the
    accelerated run converges (well inside max_iter) to the Q of 3000 plain sweeps, or lower."""
    d = factor_data(n=300, m=12, k=3, seed=4)
    rng = np.random.default_rng(0)
    G0, F0 = rng.uniform(0.1, 1.0, (300, 3)), rng.uniform(0.1, 1.0, (3, 12))
    G, F, it, converged = _run(d.X, d.U, G0.copy(), F0.copy(), robust=False, alpha=4.0, max_iter=2000, tol=1e-9)
    assert converged and it < 1000
    Gp, Fp = G0.copy(), F0.copy()
    E = d.X - Gp @ Fp
    W = 1.0 / d.U**2
    for _ in range(3000):
        _sweep(W, Gp, Fp, E, np.empty_like(E))
    q = float((W * (d.X - G @ F) ** 2).sum())
    q_plain = float((W * (d.X - Gp @ Fp) ** 2).sum())
    assert q <= q_plain * (1 + 1e-6)
