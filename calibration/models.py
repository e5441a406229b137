"""Calibration models: frozen dataclasses whose `apply` maps arrays of raw values
(and aligned covariate arrays, e.g. relative humidity) to calibrated values.

Every model is vectorised (numpy over the whole batch, no per-reading Python) and
pure: the same inputs give the same outputs. A NaN value, or a NaN / absent
covariate the formula needs, gives NaN (the caller flags it as calibration missing).

Types, as named in the registry (`type:` and `coefficients:` of an entry):
- ``linear``            y = gain*x + offset
- ``multilinear``       y = gain*x + sum(c_k * covariate_k) + offset  (covariates e.g. rh, temp)
- ``polynomial``        y = c0 + c1*x + c2*x^2 + ...
- ``epa_purpleair_2021`` / ``epa_purpleair_2022``  US EPA PM2.5 corrections for PurpleAir sensors
- ``unit_conversion``   ppb/ppm <-> ug/m3/mg/m3 of a gas at a named reference state (calibration/units.py)
- ``chain``             steps applied in order (e.g. a linear correction in ppb, then ppb -> ug/m3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from calibration import units
from schemas.parameters import PARAMETERS

Covariates = Mapping[str, ArrayLike]
FloatArray = NDArray[np.float64]
# Covariates a model may name: co-located air measurements of the same station.
COVARIATE_NAMES = tuple(sorted(p.name for p in PARAMETERS.values() if p.medium == "air"))


class ModelParamError(ValueError):
    """A model's coefficients are invalid; `key` is relative to the coefficients mapping."""

    def __init__(self, key: str, reason: str) -> None:
        self.key, self.reason = key, reason
        super().__init__(f"{key}: {reason}")


def _values(values: ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def _covariate(covariates: Covariates | None, name: str, n: int) -> FloatArray:
    """The named covariate as float64; all NaN when the batch carries none."""
    if covariates is None or name not in covariates:
        return np.full(n, np.nan)
    arr = np.asarray(covariates[name], dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"covariate {name!r} has shape {arr.shape}, values have ({n},)")
    return arr


def _number(c: Mapping[str, Any], key: str) -> float:
    if key not in c:
        raise ModelParamError(key, "is required")
    v = c[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ModelParamError(key, f"must be a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(v):
        raise ModelParamError(key, f"must be finite, got {v!r}")
    return float(v)


def _only(c: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(c) - set(allowed))
    if extra:
        raise ModelParamError(extra[0], f"unknown coefficient (allowed: {', '.join(allowed) or 'none'})")


@dataclass(frozen=True)
class Linear:
    gain: float
    offset: float
    kind: ClassVar[str] = "linear"

    @property
    def covariates(self) -> tuple[str, ...]:
        return ()

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        return self.gain * _values(values) + self.offset

    def coefficients(self) -> dict[str, Any]:
        return {"gain": self.gain, "offset": self.offset}

    @classmethod
    def from_coefficients(cls, c: Mapping[str, Any]) -> Linear:
        _only(c, ("gain", "offset"))
        return cls(_number(c, "gain"), _number(c, "offset"))


@dataclass(frozen=True)
class Multilinear:
    gain: float
    offset: float
    weights: tuple[tuple[str, float], ...]  # (covariate, coefficient), sorted by name

    kind: ClassVar[str] = "multilinear"

    @property
    def covariates(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.weights)

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        x = _values(values)
        y = self.gain * x + self.offset
        for name, w in self.weights:
            y = y + w * _covariate(covariates, name, x.shape[0])
        return y

    def coefficients(self) -> dict[str, Any]:
        return {"gain": self.gain, "offset": self.offset, "covariates": dict(self.weights)}

    @classmethod
    def from_coefficients(cls, c: Mapping[str, Any]) -> Multilinear:
        _only(c, ("gain", "offset", "covariates"))
        cov = c.get("covariates")
        if not isinstance(cov, Mapping) or not cov:
            raise ModelParamError("covariates", "must be a non-empty mapping of covariate name to coefficient (e.g. {rh: -0.05})")
        weights = []
        for name in sorted(cov):
            if name not in COVARIATE_NAMES:
                raise ModelParamError(f"covariates.{name}", f"unknown covariate (known: {', '.join(COVARIATE_NAMES)})")
            weights.append((name, _number(cov, name)))
        return cls(_number(c, "gain"), _number(c, "offset"), tuple(weights))


@dataclass(frozen=True)
class Polynomial:
    coeffs: tuple[float, ...]  # ascending powers: c0 + c1*x + c2*x^2 + ...
    kind: ClassVar[str] = "polynomial"

    @property
    def covariates(self) -> tuple[str, ...]:
        return ()

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        return np.polynomial.polynomial.polyval(_values(values), self.coeffs)

    def coefficients(self) -> dict[str, Any]:
        return {"coefficients": list(self.coeffs)}

    @classmethod
    def from_coefficients(cls, c: Mapping[str, Any]) -> Polynomial:
        _only(c, ("coefficients",))
        seq = c.get("coefficients")
        if not isinstance(seq, list) or not seq:
            raise ModelParamError("coefficients", "must be a non-empty list [c0, c1, c2, ...] (ascending powers)")
        return cls(tuple(_number({f"coefficients[{i}]": v}, f"coefficients[{i}]") for i, v in enumerate(seq)))


class _EpaPurpleAir:
    """What both EPA PurpleAir corrections share: RH as the one covariate, no coefficients."""

    @property
    def covariates(self) -> tuple[str, ...]:
        return ("rh",)

    def coefficients(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_coefficients(cls, c: Mapping[str, Any]) -> Self:
        _only(c, ())
        return cls()


def _epa_2021(pa: FloatArray, rh: FloatArray) -> FloatArray:
    """Barkjohn 2021, unclipped: also the 2022 form below PA 30."""
    return 0.524 * pa - 0.0862 * rh + 5.75


@dataclass(frozen=True)
class EpaPurpleAir2021(_EpaPurpleAir):
    """US EPA US-wide correction for PurpleAir PM2.5 (Barkjohn et al. 2021, AMT 14:4617):
    PM2.5 = 0.524*PA - 0.0862*RH + 5.75, negatives clipped to 0.

    PA: the sensor's cf_1 PM2.5 averaged over channels A and B (ug/m3); RH in %.
    The correction was fitted on 24-h means; EPA applies it to hourly means too.
    """

    kind: ClassVar[str] = "epa_purpleair_2021"

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        pa = _values(values)
        return np.maximum(_epa_2021(pa, _covariate(covariates, "rh", pa.shape[0])), 0.0)


# Breakpoints of the 2022 extended correction in PA (ug/m3): the segments are [lo, hi).
EPA_2022_BREAKPOINTS = (30.0, 50.0, 210.0, 260.0)


@dataclass(frozen=True)
class EpaPurpleAir2022(_EpaPurpleAir):
    """US EPA extended correction for PurpleAir PM2.5 up to extreme smoke, as given in
    ../shared/STANDARDS.md (cited there as Barkjohn et al. 2022, Sensors 22:9669):

    - PA < 30:         0.524*PA - 0.0862*RH + 5.75
    - 30 <= PA < 50:   [0.786*w + 0.524*(1 - w)]*PA - 0.0862*RH + 5.75,  w = PA/20 - 1.5
    - 50 <= PA < 210:  0.786*PA - 0.0862*RH + 5.75
    - 210 <= PA < 260: [0.69*w + 0.786*(1 - w)]*PA - 0.0862*RH*(1 - w) + 2.966*w
                       + 5.75*(1 - w) + 8.84e-4*PA^2*w,  w = PA/50 - 4.2
    - PA >= 260:       2.966 + 0.69*PA + 8.84e-4*PA^2
    Negatives clipped to 0. The form is continuous at every breakpoint (w runs 0 -> 1
    across each blending segment). Above 260 RH does not enter, so a missing RH
    still gives a value there.

    Unverified input channel and citation: STANDARDS.md takes PA as cf_1 for both
    corrections and cites the Sensors paper. This piecewise form is the one in EPA's
    report "Sensor data cleaning and correction: Application on the AirNow Fire and
    Smoke Map", which PurpleAir staff say is meant for cf_atm on outdoor sensors
    (community.purpleair.com/t/4593); 0.786 = 1.5*0.524 fits cf_atm ~ cf_1/1.5 at
    higher loads. Reports of the Sensors paper give a cf_1 form with breakpoints at
    570 and 611 instead. Check against EPA's text before feeding cf_1 above 30 ug/m3.
    """

    kind: ClassVar[str] = "epa_purpleair_2022"

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        pa = _values(values)
        rh = _covariate(covariates, "rh", pa.shape[0])
        b1, b2, b3, b4 = EPA_2022_BREAKPOINTS
        w1 = pa / 20.0 - 1.5
        w2 = pa / 50.0 - 4.2
        low = _epa_2021(pa, rh)
        blend1 = (0.786 * w1 + 0.524 * (1.0 - w1)) * pa - 0.0862 * rh + 5.75
        mid = 0.786 * pa - 0.0862 * rh + 5.75
        blend2 = (
            (0.69 * w2 + 0.786 * (1.0 - w2)) * pa
            - 0.0862 * rh * (1.0 - w2)
            + 2.966 * w2
            + 5.75 * (1.0 - w2)
            + 8.84e-4 * pa**2 * w2
        )
        high = 2.966 + 0.69 * pa + 8.84e-4 * pa**2
        y = np.select([pa < b1, pa < b2, pa < b3, pa < b4, pa >= b4], [low, blend1, mid, blend2, high], default=np.nan)
        return np.maximum(y, 0.0)


@dataclass(frozen=True)
class UnitConversion:
    """Gas concentration unit change at a named reference state (see calibration/units.py)."""

    species: str
    from_unit: str
    to_unit: str
    reference_state: str = "gb3095-2018"
    kind: ClassVar[str] = "unit_conversion"

    @property
    def covariates(self) -> tuple[str, ...]:
        return ()

    @property
    def factor(self) -> float:
        return units.conversion_factor(self.species, self.from_unit, self.to_unit, self.reference_state)

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        return _values(values) * self.factor

    def coefficients(self) -> dict[str, Any]:
        return {"species": self.species, "from_unit": self.from_unit, "to_unit": self.to_unit, "reference_state": self.reference_state}

    @classmethod
    def from_coefficients(cls, c: Mapping[str, Any]) -> UnitConversion:
        _only(c, ("species", "from_unit", "to_unit", "reference_state"))
        for key in ("species", "from_unit", "to_unit"):
            if not isinstance(c.get(key), str):
                raise ModelParamError(key, "is required (a string)")
        state = c.get("reference_state", "gb3095-2018")
        if state not in units.REFERENCE_STATES:
            raise ModelParamError("reference_state", f"unknown {state!r} (known: {', '.join(units.REFERENCE_STATES)})")
        for key in ("from_unit", "to_unit"):
            if c[key] not in units.UNITS:
                raise ModelParamError(key, f"unknown unit {c[key]!r} (known: {', '.join(units.UNITS)})")
        if units.UNITS[c["from_unit"]][0] != units.UNITS[c["to_unit"]][0] and c["species"] not in units.MOLAR_MASS_G_PER_MOL:
            raise ModelParamError("species", f"no molar mass for {c['species']!r} (known: {', '.join(units.MOLAR_MASS_G_PER_MOL)})")
        return cls(c["species"], c["from_unit"], c["to_unit"], state)


@dataclass(frozen=True)
class Chain:
    steps: tuple[Model, ...]
    kind: ClassVar[str] = "chain"

    @property
    def covariates(self) -> tuple[str, ...]:
        return tuple(sorted({c for s in self.steps for c in s.covariates}))

    def apply(self, values: ArrayLike, covariates: Covariates | None = None) -> FloatArray:
        y = _values(values)
        for step in self.steps:
            y = step.apply(y, covariates)
        return y

    def coefficients(self) -> dict[str, Any]:
        return {"steps": [model_to_dict(s) for s in self.steps]}

    @classmethod
    def from_coefficients(cls, c: Mapping[str, Any]) -> Chain:
        _only(c, ("steps",))
        steps = c.get("steps")
        if not isinstance(steps, list) or len(steps) < 2:
            raise ModelParamError("steps", "must be a list of at least two {type, coefficients} models")
        out = []
        for i, step in enumerate(steps):
            if not isinstance(step, Mapping):
                raise ModelParamError(f"steps[{i}]", "must be a mapping with type and coefficients")
            try:
                out.append(model_from_dict(step))
            except ModelParamError as exc:
                raise ModelParamError(f"steps[{i}].{exc.key}", exc.reason) from None
        return cls(tuple(out))


Model = Union[Linear, Multilinear, Polynomial, EpaPurpleAir2021, EpaPurpleAir2022, UnitConversion, Chain]
MODEL_TYPES: dict[str, type] = {
    m.kind: m for m in (Linear, Multilinear, Polynomial, EpaPurpleAir2021, EpaPurpleAir2022, UnitConversion, Chain)
}


def model_from_dict(doc: Mapping[str, Any]) -> Model:
    """Build a model from {type, coefficients}; ModelParamError names the bad key
    relative to `doc` (e.g. 'type', 'coefficients.gain')."""
    kind = doc.get("type")
    if kind not in MODEL_TYPES:
        raise ModelParamError("type", f"unknown model type {kind!r} (known: {', '.join(MODEL_TYPES)})")
    coeffs = doc.get("coefficients", {})
    if coeffs is None:
        coeffs = {}
    if not isinstance(coeffs, Mapping):
        raise ModelParamError("coefficients", f"must be a mapping, got {type(coeffs).__name__}")
    try:
        return MODEL_TYPES[kind].from_coefficients(coeffs)
    except ModelParamError as exc:
        raise ModelParamError(f"coefficients.{exc.key}", exc.reason) from None


def model_to_dict(model: Model) -> dict[str, Any]:
    return {"type": model.kind, "coefficients": model.coefficients()}
