"""Surface-water class of a site under GB 3838-2002 (data: data/gb3838-2002.yaml).

Per parameter (GB 3838-2002 Table 1): the class is the best class whose limit the
value meets - "<=" limits (CODMn, COD, BOD5, NH3-N, TP, TN), ">=" for dissolved
oxygen (higher is better), and pH within 6-9 for every class. A value equal to a
class limit belongs to that class (the limits are inclusive: "<=" / ">="). A value
that meets no class limit is worse than V (劣V), class 6. Lakes and reservoirs
have their own TP limits; TN is evaluated for lakes and reservoirs only.

The site's class is its worst parameter's class; every parameter at that class
is named as determining. Comparisons are exact (Decimal; floats via their repr).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from alerts.standards.aqi import Number, as_decimal, fmt
from alerts.standards.tables import WaterClass, WaterParameter, WaterStandard, registry

Waterbody = Literal["river", "lake"]


@dataclass(frozen=True)
class ParameterClass:
    parameter: str
    value: Decimal
    unit: str
    applicable: bool  # False: the standard does not evaluate it for this waterbody (TN in rivers)
    klass: WaterClass | None
    limit: str | None  # the limit met (e.g. "<= 1.0", ">= 5", "6..9") or the class V limit missed
    clause: str
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "parameter": self.parameter, "value": float(self.value), "unit": self.unit,
            "applicable": self.applicable, "class": None if self.klass is None else self.klass.number,
            "label": None if self.klass is None else self.klass.label, "limit": self.limit,
            "clause": self.clause, "verified": self.verified,
        }


@dataclass(frozen=True)
class WaterResult:
    standard: str
    standard_id: str
    edition: str
    waterbody: Waterbody
    klass: WaterClass
    determining: tuple[str, ...]
    parameters: tuple[ParameterClass, ...]
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "standard": self.standard, "standard_id": self.standard_id, "edition": self.edition,
            "waterbody": self.waterbody, "class": self.klass.number, "label": self.klass.label,
            "local_label": self.klass.local_label, "determining_parameters": list(self.determining),
            "parameters": [p.to_dict() for p in self.parameters], "verified": self.verified,
        }


def parameter_class(std: WaterStandard, parameter: str, value: Number, waterbody: Waterbody) -> ParameterClass:
    """The class of one parameter value; limits inclusive, worse than V when no limit is met."""
    if waterbody not in ("river", "lake"):
        raise ValueError(f"waterbody must be 'river' or 'lake' (lake or reservoir), got {waterbody!r}")
    p = _parameter(std, parameter)
    v = as_decimal(value, parameter)
    if waterbody not in p.applies_to:
        return ParameterClass(parameter, v, p.unit, False, None, None, p.clause, p.verified)
    if p.direction == "range":
        low, high = p.range  # type: ignore[misc]
        ok = low <= v <= high
        # pH has one range for every class: it does not decide between I..V, only against worse than V.
        klass = std.classes[0] if ok else std.worse
        return ParameterClass(parameter, v, p.unit, True, klass, f"{fmt(low)}..{fmt(high)}", p.clause, p.verified)
    limits = p.limits[waterbody]
    sign = "<=" if p.direction == "max" else ">="
    for cls, limit in zip(std.classes, limits):
        if (v <= limit) if p.direction == "max" else (v >= limit):
            return ParameterClass(parameter, v, p.unit, True, cls, f"{sign} {fmt(limit)}", p.clause, p.verified)
    return ParameterClass(parameter, v, p.unit, True, std.worse, f"misses {sign} {fmt(limits[-1])}", p.clause,
                          p.verified)


def _parameter(std: WaterStandard, name: str) -> WaterParameter:
    try:
        return std.parameters[name]
    except KeyError:
        raise ValueError(f"unknown parameter {name!r} for {std.standard_id}; use one of: "
                         f"{', '.join(std.parameters)}") from None


def water_class(values: Mapping[str, Number], waterbody: Waterbody = "river", on: date | None = None,
                std: WaterStandard | None = None) -> WaterResult:
    """A site's class: the worst applicable parameter's class, naming every parameter at it.

    `on` (the sample's local date) picks the edition; default: the latest edition.
    Raises ValueError for an unknown parameter, a negative or non-numeric value,
    or when no given parameter applies to the waterbody.
    """
    if std is None:
        reg = registry()
        std = reg.water_standard(on) if on is not None else max(reg.water, key=lambda s: s.effective_from)
    if not values:
        raise ValueError("no parameter values given")
    results = tuple(parameter_class(std, name.strip().lower(), value, waterbody) for name, value in values.items())
    applicable = [r for r in results if r.applicable and r.klass is not None]
    if not applicable:
        raise ValueError(f"none of {', '.join(values)} is evaluated for a {waterbody} under {std.standard_id}")
    worst = max(applicable, key=lambda r: r.klass.number)  # type: ignore[union-attr]
    assert worst.klass is not None
    determining = tuple(r.parameter for r in applicable if r.klass is not None and r.klass.number == worst.klass.number)
    return WaterResult(std.standard, std.standard_id, std.edition, waterbody, worst.klass, determining, results,
                       all(r.verified for r in applicable))
