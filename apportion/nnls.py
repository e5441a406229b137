"""Exact non-negative least squares for a few columns, batched over many right-hand sides.

The transport regression has one column per upwind region plus the local intercept
(rarely more than 6), and its bootstrap needs hundreds of solves per receptor. A NNLS
optimum is the unconstrained least-squares solution on its own support, and every
feasible support solution is a feasible point, so the optimum is the feasible support
solution with the smallest residual. Where the least-squares solution on all columns
is already non-negative it is the optimum (most problems); most others are solved by
dropping their negative columns (checked by the optimality conditions), and the rest
try all 2^K - 1 supports, every support and problem in one batched solve: exact (the
same optimum scipy.optimize.nnls finds) and much faster than a Python loop of scipy
calls. Above MAX_ENUMERATED columns, and for one or two problems, it calls
scipy.optimize.nnls per problem.
"""

from __future__ import annotations

from functools import cache
from itertools import combinations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

MAX_ENUMERATED = 8
SCIPY_BATCH = 2  # a single problem is faster through scipy's compiled active-set solver
_FEASIBLE_TOL = 1e-10


def nnls_batch(A: NDArray[np.float64], b: NDArray[np.float64], allowed: NDArray[np.bool_] | None = None) -> NDArray[np.float64]:
    """argmin_{x >= 0} ||A x - b|| for each batch member: A (B, T, K), b (B, T) -> x (B, K).

    `allowed` (B, K), if given, limits each problem to its own columns (the rest stay 0), so
    problems with different column sets share one batch.
    """
    n_batch, _, k = A.shape
    if allowed is None:
        allowed = np.ones((n_batch, k), dtype=bool)
    if k > MAX_ENUMERATED or n_batch <= SCIPY_BATCH:
        x = np.zeros((n_batch, k))
        for i in range(n_batch):
            cols = np.flatnonzero(allowed[i])
            if cols.size:
                x[i, cols] = nnls(A[i][:, cols], b[i])[0]
        return x
    return nnls_gram(np.matmul(A.transpose(0, 2, 1), A), np.matmul(b[:, None, :], A)[:, 0], allowed)


def nnls_gram(gram: NDArray[np.float64], rhs: NDArray[np.float64], allowed: NDArray[np.bool_]) -> NDArray[np.float64]:
    """The same from the normal equations: gram = A'A (B, K, K), rhs = A'b (B, K), allowed (B, K).

    For callers whose rows carry weights (a bootstrap replicate's counts), which enter A'WA
    without building the repeated rows. K <= MAX_ENUMERATED.
    """
    k = gram.shape[-1]
    # Relative ridge only guards against exactly collinear columns (e.g. a region never upwind).
    gram = gram + 1e-12 * np.maximum(np.einsum("bkk->bk", gram), 1e-300)[:, :, None] * np.eye(k)
    x = _solve_on(gram, rhs, allowed)
    rest = np.flatnonzero(x.min(axis=1) < -_FEASIBLE_TOL)
    x = np.maximum(x, 0.0)
    if rest.size:
        # Most of the others are solved by dropping their negative columns: a non-negative
        # solution there is the optimum if no dropped column could lower the residual (KKT).
        cols = allowed[rest] & (x[rest] > 0)
        z = _solve_on(gram[rest], rhs[rest], cols)
        grad = np.einsum("bkl,bl->bk", gram[rest], z) - rhs[rest]
        scale = np.abs(rhs[rest]).max(axis=1, keepdims=True)
        kkt = (z.min(axis=1) >= -_FEASIBLE_TOL) & np.where(cols | ~allowed[rest], True, grad >= -1e-9 * scale).all(axis=1)
        x[rest[kkt]] = np.maximum(z[kkt], 0.0)
        rest = rest[~kkt]
    if rest.size:
        supports = _supports(k)[:, None, :] & allowed[rest][None, :, :]  # (2^K - 1, R, K)
        xs = _solve_on(gram[rest][None], rhs[rest][None], supports)
        # ||b||^2 - residual^2 = x . rhs at a support's least-squares solution: the largest
        # among the feasible ones is the optimum (a support with a column not allowed repeats a smaller one).
        gain = np.where(xs.min(axis=2) >= -_FEASIBLE_TOL, np.einsum("srk,rk->sr", xs, rhs[rest]), -np.inf)
        x[rest] = np.maximum(xs[gain.argmax(axis=0), np.arange(rest.size)], 0.0)
    return x


def _solve_on(gram: NDArray[np.float64], rhs: NDArray[np.float64], cols: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Least-squares solutions from the normal equations on the columns `cols` (..., K), zero elsewhere."""
    k = cols.shape[-1]
    g = np.where(cols[..., :, None] & cols[..., None, :], gram, np.eye(k))
    return np.linalg.solve(g, np.where(cols, rhs, 0.0)[..., None])[..., 0]


@cache
def _supports(k: int) -> NDArray[np.bool_]:
    """Every non-empty subset of k columns as a mask, smallest first."""
    return np.array([[c in s for c in range(k)] for size in range(1, k + 1) for s in combinations(range(k), size)])
