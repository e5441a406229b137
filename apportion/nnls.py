"""Exact non-negative least squares for a few columns, batched over many right-hand sides.

The transport regression has one column per upwind region plus the local intercept
(rarely more than 6), and its bootstrap needs hundreds of solves per receptor. A NNLS
optimum is the unconstrained least-squares solution on its own support, and every
feasible support solution is a feasible point, so the optimum is the feasible support
solution with the smallest residual. For K columns that is 2^K - 1 tiny solves, each
vectorised over the batch: exact (the same optimum scipy.optimize.nnls finds) and
much faster than a Python loop of scipy calls. Above MAX_ENUMERATED columns, and for
one or two problems, it calls scipy.optimize.nnls per problem.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import nnls

MAX_ENUMERATED = 8
SCIPY_BATCH = 2  # a single problem is faster through scipy's compiled active-set solver
_FEASIBLE_TOL = 1e-10


def nnls_batch(A: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """argmin_{x >= 0} ||A x - b|| for each batch member: A (B, T, K), b (B, T) -> x (B, K)."""
    n_batch, _, k = A.shape
    if k > MAX_ENUMERATED or n_batch <= SCIPY_BATCH:
        return np.stack([nnls(A[i], b[i])[0] for i in range(n_batch)])
    gram = np.einsum("btk,btl->bkl", A, A)
    rhs = np.einsum("btk,bt->bk", A, b)
    # Relative ridge only guards against exactly collinear columns (e.g. a region never upwind).
    ridge = 1e-12 * np.maximum(np.einsum("bkk->bk", gram), 1e-300)
    best_x = np.zeros((n_batch, k))
    best_gain = np.zeros(n_batch)  # ||b||^2 - residual^2 = x . rhs at a support's LS solution
    for size in range(1, k + 1):
        for support in combinations(range(k), size):
            idx = np.array(support)
            g = gram[:, idx[:, None], idx[None, :]] + ridge[:, idx][:, :, None] * np.eye(size)
            x = np.linalg.solve(g, rhs[:, idx][:, :, None])[:, :, 0]
            gain = np.einsum("bk,bk->b", x, rhs[:, idx])
            better = (x.min(axis=1) >= -_FEASIBLE_TOL) & (gain > best_gain + 1e-12 * np.abs(best_gain))
            if better.any():
                best_gain = np.where(better, gain, best_gain)
                full = np.zeros((n_batch, k))
                full[:, idx] = np.maximum(x, 0.0)
                best_x = np.where(better[:, None], full, best_x)
    return best_x
