"""Inverses of the calibration models (calibration/models.py): the raw sensor output
that a model maps to a given calibrated value.

The simulator knows what a reference analyzer would read at a low-cost sensor's
site; to publish that sensor realistically it must send the raw value whose
calibration gives that reading back: raw = inverse(model)(reading). This is a
simulation concern, so it lives here and calibration/models.py stays as it is.

Vectorised like the models themselves: closed forms where the model has one
(linear, multilinear, unit conversion, EPA 2021, a polynomial of degree <= 1, and
chains of those), otherwise a bisection over the raw plausible range (polynomials,
the piecewise EPA 2022 form, chains containing them), which needs the model to be
monotone there: every model of the registry is (the EPA 2022 form increases in PA
for every RH in 0..100). For a value the model cannot reach within the range the
bisection returns the nearest end, which is where the caller clips raw values anyway.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from calibration.models import (
    Chain,
    Covariates,
    EpaPurpleAir2021,
    FloatArray,
    Linear,
    Model,
    Multilinear,
    Polynomial,
    UnitConversion,
)
from calibration.models import _covariate  # the models' own reading of a covariate (all NaN when the batch lacks it)

# 2**-60 of a range of 1e4 is ~1e-14: below float64 resolution of any plausible value.
BISECT_ITERATIONS = 60


def _closed_form(model: Model, y: FloatArray, covariates: Covariates | None) -> FloatArray | None:
    """The exact inverse, or None when the model has no closed form here."""
    n = y.shape[0]
    if isinstance(model, Linear):
        return (y - model.offset) / model.gain if model.gain else np.full(n, np.nan)
    if isinstance(model, Multilinear):
        if not model.gain:
            return np.full(n, np.nan)
        rest = sum((w * _covariate(covariates, name, n) for name, w in model.weights), np.zeros(n))
        return (y - model.offset - rest) / model.gain
    if isinstance(model, UnitConversion):
        return y / model.factor
    if isinstance(model, EpaPurpleAir2021):
        # y = max(0.524*PA - 0.0862*RH + 5.75, 0). For y = 0 (the clipped part) any PA up to
        # the formula's root maps to 0: the root itself is as good an inverse as any.
        return (y + 0.0862 * _covariate(covariates, "rh", n) - 5.75) / 0.524
    if isinstance(model, Polynomial) and len(model.coeffs) <= 2:
        c0, c1 = (*model.coeffs, 0.0)[:2]
        return (y - c0) / c1 if c1 else np.full(n, np.nan)
    if isinstance(model, Chain):
        x: FloatArray | None = y
        for step in reversed(model.steps):  # undo the last step first
            x = _closed_form(step, x, covariates)
            if x is None:
                return None
        return x
    return None


def _bisect(f: Callable[[FloatArray], FloatArray], y: FloatArray, lo: float, hi: float) -> FloatArray:
    """x in [lo, hi] with f(x) = y, element-wise, for f monotone on [lo, hi] (either way)."""
    n = y.shape[0]
    a, b = np.full(n, float(lo)), np.full(n, float(hi))
    f_lo, f_hi = f(a), f(b)
    # Flip a decreasing model so that "f(mid) < target: go right" holds for every element.
    sign = np.where(f_hi >= f_lo, 1.0, -1.0)
    target = sign * y
    for _ in range(BISECT_ITERATIONS):
        mid = 0.5 * (a + b)
        right = sign * f(mid) < target
        a = np.where(right, mid, a)
        b = np.where(right, b, mid)
    x = 0.5 * (a + b)
    # NaN in y or in a covariate makes every comparison False: say NaN, not an end of the range.
    # So does a model undefined at an end (EPA 2022 without RH is defined only above PA 260).
    ok = np.isfinite(y) & np.isfinite(f_lo) & np.isfinite(f_hi) & np.isfinite(f(x))
    return np.where(ok, x, np.nan)


def inverse(model: Model, values: ArrayLike, covariates: Covariates | None = None, bounds: tuple[float, float] = (0.0, 1e4)) -> FloatArray:
    """Raw values x with model.apply(x, covariates) == values (1-D arrays).

    `bounds` is the raw plausible range the bisection searches (the closed forms
    ignore it: clip their result if it must stay in range). NaN where the value or a
    covariate the model needs is NaN.
    """
    y = np.asarray(values, dtype=np.float64)
    exact = _closed_form(model, y, covariates)
    if exact is not None:
        return exact
    lo, hi = bounds
    return _bisect(lambda x: model.apply(x, covariates), y, lo, hi)
