"""Source-type factors in the PMF sense: X ~ G F with G, F >= 0, minimising Q = sum(((X - G F) / U)^2).

Solver: weighted HALS (hierarchical alternating least squares), i.e. block coordinate
descent where each update sets one contribution column g_k (then one profile row f_k)
to the exact minimiser of Q with everything else fixed:

    g_k = max(0, ((W * R_k) f_k) / (W f_k^2)),   R_k = X - G F + g_k f_k,  W = 1 / U^2

Every element of g_k is decoupled given the rest, so each step is an exact
non-negative solve and Q never increases. Each sweep is extrapolated along its step
(Ang & Gillis 2019; see _run), which cuts the sweeps needed 3-5x: tens, where the
multiplicative updates of ls-nmf need thousands at about the same cost per sweep (a few
n x m array operations per factor; the rank-1 residual updates go straight to BLAS).

Robust mode (as EPA PMF): cells with |residual / U| > alpha (4) get their uncertainty
inflated by sqrt(|residual / U| / alpha), re-evaluated every sweep, so an outlier
costs alpha * |r/u| instead of (r/u)^2. Profiles are normalised to sum to 1 (the scale
lives in G). Several random starts from `default_rng(seed)`; the lowest Q wins.
Factor-count aids: Q / Qexp with Qexp = n m - p (n + m), and the scaled residuals.
`project` streams new hours: the weighted NNLS of each row on the fixed profiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.linalg.blas import dger

from apportion.nnls import nnls_batch

MODEL_VERSION = "pmf-whals/2"
Array = NDArray[np.float64]
_EPS = 1e-12
# Extrapolation weights (Ang & Gillis): the starting beta, its growth after a successful step,
# the growth of its ceiling, and its cut after a failed one.
_BETA_START, _BETA_GROW, _BETA_MAX_GROW, _BETA_SHRINK = 0.5, 1.5, 1.05, 2.0


@dataclass(frozen=True)
class PMFResult:
    G: Array  # (n, p) contributions
    F: Array  # (p, m) profiles, rows sum to 1
    Q: float  # Q(true)
    Q_robust: float
    Q_exp: float
    scaled_residuals: Array  # (X - G F) / U
    n_iter: int
    converged: bool
    restart_Q: tuple[float, ...]  # objective of every start, the chosen one is the smallest
    model_version: str = MODEL_VERSION


def q_expected(n: int, m: int, p: int) -> float:
    return float(n * m - p * (n + m))


def _robust_weights(E: Array, U: Array, alpha: float) -> tuple[Array, float]:
    """Weights 1/(U h)^2 with h^2 = max(1, |E/U| / alpha), and the robust Q they imply."""
    r = np.abs(E / U)
    h2 = np.maximum(1.0, r / alpha)
    return 1.0 / (U * U * h2), float((r * r / h2).sum())


# OpenBLAS spreads a rank-1 update over threads above 8192 cells; on a machine whose cores
# are busy with other work those threads wait on each other for milliseconds (measured here:
# p99 32 us, max 8 ms for 720 x 20 under one competing process), so updates go in row blocks.
_GER_CELLS = 8192


def _add_outer(E: Array, g: Array, f: Array, alpha: float) -> None:
    """E += alpha g f' in place (BLAS ger on row blocks of the C-ordered E, no n x m temporary)."""
    rows = max(1, _GER_CELLS // E.shape[1])
    for i in range(0, E.shape[0], rows):
        dger(alpha, f, g[i:i + rows], a=E[i:i + rows].T, overwrite_a=1)


def _sweep(W: Array, G: Array, F: Array, E: Array, WR: Array) -> None:
    """One HALS pass over the factors, in place on G, F and the residual E = X - G F (WR: workspace)."""
    for k in range(G.shape[1]):
        g, f = G[:, k], F[k]
        _add_outer(E, g, f, 1.0)  # E is now the residual without factor k
        np.multiply(W, E, out=WR)
        g = np.maximum(WR @ f / np.maximum(W @ (f * f), _EPS), 0.0)
        f = np.maximum(g @ WR / np.maximum((g * g) @ W, _EPS), 0.0)
        total = f.sum()
        if total > _EPS:  # keep profiles summing to 1; the scale goes to the contributions
            f, g = f / total, g * total
        G[:, k], F[k] = g, f
        _add_outer(E, g, f, -1.0)


def _normalise(G: Array, F: Array) -> None:
    total = F.sum(axis=1)
    ok = total > _EPS
    F[ok] /= total[ok, None]
    G[:, ok] *= total[ok]


def _run(X: Array, U: Array, G: Array, F: Array, robust: bool, alpha: float, max_iter: int, tol: float) -> tuple[Array, Array, int, bool]:
    """HALS sweeps with extrapolation (Ang & Gillis 2019, Neural Computation 31(2)).

    After each sweep the iterate is pushed further along its last step, G + beta (G - G_prev)
    (and F alike, clipped at 0); if that lowers Q it becomes the next iterate and beta grows,
    otherwise the plain sweep's result is kept and beta shrinks. Along the long, flat valleys
    of this objective plain sweeps creep; extrapolated ones need 3-5x fewer.
    """
    inv_u2 = 1.0 / (U * U)
    inv_ua = 1.0 / (U * alpha)
    E = X - G @ F
    W = inv_u2 / np.maximum(np.abs(E) * inv_ua, 1.0) if robust else inv_u2
    WR = np.empty_like(E)
    G_prev, F_prev = G.copy(), F.copy()
    beta, beta_max = _BETA_START, 1.0
    q_prev = np.inf
    for it in range(1, max_iter + 1):
        _sweep(W, G, F, E, WR)
        q = float(np.vdot(np.multiply(W, E, out=WR), E))
        Ge = np.maximum(G + beta * (G - G_prev), 0.0)
        Fe = np.maximum(F + beta * (F - F_prev), 0.0)
        _normalise(Ge, Fe)
        Ee = X - Ge @ Fe
        qe = float(np.vdot(np.multiply(W, Ee, out=WR), Ee))
        G_prev, F_prev = G.copy(), F.copy()
        if qe < q:
            G, F, E, q = Ge, Fe, Ee, qe
            beta, beta_max = min(beta_max, _BETA_GROW * beta), min(1.0, _BETA_MAX_GROW * beta_max)
        else:
            beta, beta_max = beta / _BETA_SHRINK, beta
        if robust:  # W = 1 / (U h)^2, h^2 = max(1, |E/U| / alpha), as _robust_weights
            W = np.divide(inv_u2, np.maximum(np.abs(E) * inv_ua, 1.0))
        if abs(q_prev - q) <= tol * max(q, _EPS):
            return G, F, it, True
        q_prev = q
    return G, F, max_iter, False


def fit(X: Array, U: Array, p: int, seed: int = 0, restarts: int = 5, robust: bool = True, alpha: float = 4.0,
        max_iter: int = 2000, tol: float = 1e-6) -> PMFResult:
    """Factorise X (n, m) with uncertainties U (n, m) into p factors; deterministic for a seed."""
    X, U = np.asarray(X, dtype=float), np.asarray(U, dtype=float)
    if X.shape != U.shape or X.ndim != 2:
        raise ValueError(f"X and U must be equal 2-D shapes, got {X.shape} and {U.shape}")
    if (U <= 0).any() or not np.isfinite(X).all() or not np.isfinite(U).all():
        raise ValueError("U must be > 0 and X, U finite (give missing cells a large uncertainty instead)")
    n, m = X.shape
    rng = np.random.default_rng(seed)
    scale = float(np.sqrt(max(X.mean(), _EPS) / p))
    best: tuple[float, Array, Array, int, bool] | None = None
    qs = []
    for _ in range(restarts):
        G0 = rng.uniform(0.1, 1.0, (n, p)) * scale
        F0 = rng.uniform(0.1, 1.0, (p, m)) * scale
        G, F, it, conv = _run(X, U, G0, F0, robust, alpha, max_iter, tol)
        E = X - G @ F
        q = _robust_weights(E, U, alpha)[1] if robust else float(((E / U) ** 2).sum())
        qs.append(q)
        if best is None or q < best[0]:
            best = (q, G, F, it, conv)
    assert best is not None
    _, G, F, it, conv = best
    E = X - G @ F
    return PMFResult(G, F, float(((E / U) ** 2).sum()), _robust_weights(E, U, alpha)[1], q_expected(n, m, p), E / U,
                     it, conv, tuple(qs))


def project(new_rows: Array, H: Array, U: Array) -> Array:
    """Contributions of new rows (b, m) on fixed profiles H (p, m): weighted NNLS per row, U (b, m)."""
    x, u = np.atleast_2d(new_rows).astype(float), np.atleast_2d(U).astype(float)
    A = H.T[None, :, :] / u[:, :, None]  # (b, m, p)
    return nnls_batch(A, x / u)


@dataclass(frozen=True)
class FactorCountAid:
    p: int
    Q: float
    Q_exp: float
    Q_ratio: float  # Q / Qexp: near 1 when the model explains the data to within its uncertainty
    frac_scaled_over_3: float  # share of cells with |residual / U| > 3


def factor_count_aids(X: Array, U: Array, ps: range | list[int], seed: int = 0, restarts: int = 3) -> list[FactorCountAid]:
    """Q/Qexp and the scaled-residual tail for each candidate factor count."""
    out = []
    for p in ps:
        r = fit(X, U, p, seed=seed, restarts=restarts)
        out.append(FactorCountAid(p, r.Q, r.Q_exp, r.Q / r.Q_exp, float((np.abs(r.scaled_residuals) > 3).mean())))
    return out
