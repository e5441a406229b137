"""Sub-indices over numpy arrays, identical to the exact scalar path.

The pipeline computes indices for batches (DESIGN.md: per-reading work must not
go record by record through Python). Float arithmetic is exact enough except
near a decision point - a truncation step, an integer (ceil) or a half (round
half up), a table edge - where binary noise could flip the result. Elements
within a small tolerance of such a point are recomputed by the exact scalar path
(`aqi.sub_index`), so the results equal the scalar ones for every input; the
tolerances are orders of magnitude above float64 rounding error.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from alerts.standards.aqi import sub_index
from alerts.standards.tables import AqiEdition

_STEP_TOL = 1e-6  # relative, on value * 10**decimals
_ROUND_TOL = 1e-7  # relative, on the unrounded index
_EDGE_TOL = 1e-9  # relative, on the table's first and last breakpoint


def sub_index_array(edition: AqiEdition, item: str, values: ArrayLike) -> NDArray[np.float64]:
    """Sub-index of every value (table units) as float64; NaN where the value defines none.

    Same meaning as `sub_index(edition, item, v).value` element-wise: NaN input,
    below the table, or a `substitute` rule above the table give NaN (the
    cross-item rules need the other item: use `compute_aqi`); beyond the table
    gives the top index. Negative or infinite values raise ValueError.
    """
    table = edition.tables[item]
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if np.any(np.isinf(v)) or np.any(v[finite] < 0):
        raise ValueError(f"{item}: concentrations must be finite and non-negative")
    risky = np.zeros(v.shape, dtype=bool)
    if table.truncate is not None:
        scaled = v * 10.0**table.truncate
        used = np.floor(scaled) / 10.0**table.truncate
        risky |= np.abs(scaled - np.round(scaled)) <= _STEP_TOL * np.maximum(1.0, np.abs(scaled))
    else:
        used = v.copy()

    c_lo = np.array([float(r.c_lo) for r in table.rows])
    c_hi = np.array([float(r.c_hi) for r in table.rows])
    i_lo = np.array([float(r.i_lo) for r in table.rows])
    i_hi = np.array([float(r.i_hi) for r in table.rows])
    bottom, top = c_lo[0], c_hi[-1]
    for edge in (bottom, top):
        risky |= np.abs(used - edge) <= _EDGE_TOL * max(1.0, edge)

    out = np.full(v.shape, np.nan)
    inside = finite & (used >= bottom) & (used <= top)
    idx = np.clip(np.searchsorted(c_hi, used, side="left"), 0, len(c_hi) - 1)
    with np.errstate(invalid="ignore"):
        raw = i_lo[idx] + (i_hi[idx] - i_lo[idx]) * (used - c_lo[idx]) / (c_hi[idx] - c_lo[idx])
        if edition.method.rounding == "ceil":
            rounded = np.ceil(raw)
            risky |= np.abs(raw - np.round(raw)) <= _ROUND_TOL * np.maximum(1.0, np.abs(raw))
        else:
            rounded = np.floor(raw + 0.5)
            risky |= np.abs(raw - np.floor(raw) - 0.5) <= _ROUND_TOL * np.maximum(1.0, np.abs(raw))
    out[inside] = rounded[inside]

    above = finite & (used > top)
    rule = edition.rules.get(item)
    if rule is None:
        out[above] = float(table.i_max)
    elif rule.action == "fixed":
        out[above] = float(rule.index or 0)
    # substitute rules and below-table values stay NaN

    for pos in zip(*np.nonzero(risky & finite)):
        value = sub_index(edition, item, float(v[pos])).value
        out[pos] = np.nan if value is None else float(value)
    return out
