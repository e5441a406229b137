"""Air quality indices, exact: China HJ 633 (2012, 2026) and US EPA (2018, 2024 tables).

All tables, rounding rules and above-table rules come from the edition's data
file (alerts/standards/data/*.yaml); this module only interprets them:

- sub-index (IAQI): linear interpolation within the bracket (HJ 633 §4 formula
  (1); EPA TAD equation 1) in exact rational arithmetic, then rounded as the
  edition says: HJ 633 carries up to an integer (ceil), EPA rounds to the nearest
  integer (half up). EPA inputs are first truncated to the table's decimals.
  Floats are read through their shortest repr (35.4 -> Decimal("35.4")), so a
  concentration exactly on a breakpoint gives exactly the breakpoint's index.
- AQI: the largest counted sub-index (HJ 633 §4 formula (2); EPA TAD).
- primary pollutant(s): every counted item tied at the AQI, only when the AQI is
  above the edition's `primary_above` (HJ 633: > 50; EPA: always).
- above-table rules (HJ 633-2012 Table 1 notes (2)/(3); EPA footnotes for 8-h O3
  and 1-h SO2): the item has no sub-index of its own; the pollutant's sub-index is
  the one of the substitute item, which must then be given.
- above the top breakpoint: the top index (500), flagged `beyond_table`
  ("beyond the AQI" for EPA).

The date decides the edition: pass the reading's local date (China: UTC+8).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from fractions import Fraction
from typing import Any, Literal

from alerts.standards.tables import AqiEdition, BreakpointTable, Category, Row, registry
from alerts.standards.units import convert
from schemas.parameters import PARAMETERS

Number = int | float | Decimal | str
Status = Literal["table", "beyond_table", "below_table", "deferred", "substituted", "fixed"]


class InsufficientData(ValueError):
    """The given concentrations do not define the index (a rule needs another item, or nothing is defined)."""


class UnknownItem(ValueError):
    """A pollutant / averaging-period name the edition or report does not know."""


@dataclass(frozen=True)
class SubIndex:
    """One pollutant's sub-index (IAQI), with the input it came from and why."""

    item: str
    pollutant: str
    averaging: str
    unit: str
    concentration: Decimal  # as given, in `unit`
    used: Decimal  # as looked up (EPA: truncated)
    value: int | None  # None: this input defines no sub-index (see status/note)
    exact: Fraction | None  # unrounded interpolation
    status: Status
    row: Row | None
    beyond: bool
    counted: bool  # enters the AQI
    verified: bool
    clause: str
    note: str | None = None
    source_item: str | None = None  # the item whose sub-index was substituted

    def to_dict(self) -> dict[str, Any]:
        return {
            "item": self.item, "pollutant": self.pollutant, "averaging": self.averaging, "unit": self.unit,
            "concentration": _num(self.concentration), "used_concentration": _num(self.used),
            "sub_index": self.value, "exact": None if self.exact is None else float(self.exact),
            "status": self.status, "beyond_table": self.beyond, "counted": self.counted,
            "bracket": None if self.row is None else
            {"c_lo": _num(self.row.c_lo), "c_hi": _num(self.row.c_hi), "i_lo": self.row.i_lo, "i_hi": self.row.i_hi},
            "verified": self.verified, "clause": self.clause, "note": self.note, "source_item": self.source_item,
        }


@dataclass(frozen=True)
class AqiResult:
    family: str
    standard: str
    standard_id: str
    edition: str
    report: str
    aqi: int
    beyond_table: bool
    category: Category
    primary_pollutants: tuple[str, ...]
    exceeding_pollutants: tuple[str, ...]
    sub_indices: tuple[SubIndex, ...]
    verified: bool  # every counted cell, rule and the report composition verified

    def to_dict(self) -> dict[str, Any]:
        c = self.category
        return {
            "standard": self.standard, "standard_id": self.standard_id, "edition": self.edition,
            "family": self.family, "report": self.report, "aqi": self.aqi, "beyond_table": self.beyond_table,
            "category": {"level": c.level, "name": c.name, "local_name": c.local_name, "colour": c.colour,
                         "colour_name": c.colour_name, "range": [c.low, c.high]},
            "primary_pollutants": list(self.primary_pollutants),
            "exceeding_pollutants": list(self.exceeding_pollutants),
            "sub_indices": [s.to_dict() for s in self.sub_indices],
            "verified": self.verified,
        }


def _num(d: Decimal) -> int | float:
    return int(d) if d == d.to_integral_value() else float(d)


def fmt(d: Decimal) -> str:
    """A Decimal as plain text without exponent or trailing zeros."""
    return format(d.normalize(), "f") if d == d.to_integral_value() else format(d, "f")


def as_decimal(value: Number, what: str = "concentration") -> Decimal:
    """A finite, non-negative concentration as Decimal; floats via their shortest repr."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: not a number: {value!r}")
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, str):
            d = Decimal(value.strip())
        elif isinstance(value, numbers.Real):  # float, numpy scalars
            d = Decimal(repr(float(value)))
        else:
            raise ValueError(f"{what}: not a number: {value!r}")
    except InvalidOperation:
        raise ValueError(f"{what}: not a number: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{what}: must be finite, got {value!r}")
    if d < 0:
        raise ValueError(f"{what}: must not be negative, got {fmt(d)}")
    return d


def truncate(value: Decimal, decimals: int | None) -> Decimal:
    """EPA TAD step 2: cut (not round) to `decimals` places; None leaves the value as given."""
    if decimals is None:
        return value
    return value.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def interpolate(row: Row, c: Decimal) -> Fraction:
    """HJ 633 formula (1) / EPA equation 1, exactly: (Ihi-Ilo)/(Chi-Clo)*(C-Clo)+Ilo."""
    span = Fraction(row.c_hi) - Fraction(row.c_lo)
    return Fraction(row.i_hi - row.i_lo) * (Fraction(c) - Fraction(row.c_lo)) / span + row.i_lo


def round_index(exact: Fraction, rounding: str) -> int:
    if rounding == "ceil":
        return math.ceil(exact)
    if rounding == "half_up":
        return math.floor(exact + Fraction(1, 2))
    raise ValueError(f"unknown rounding {rounding!r}")


def find_row(table: BreakpointTable, used: Decimal) -> Row:
    # At a shared breakpoint of a continuous table both brackets give the same index; take the lower.
    for row in table.rows:
        if row.c_lo <= used <= row.c_hi:
            return row
    raise ValueError(f"{table.item}: {fmt(used)} {table.unit} falls in no bracket")  # excluded by validation


def sub_index(edition: AqiEdition, item: str, concentration: Number) -> SubIndex:
    """The sub-index of one item from its own table, before cross-item rules.

    Above the table: `fixed` rule -> its index; `substitute` rule -> status
    "deferred" (value None; `compute_aqi` resolves it); no rule -> top index,
    beyond_table. Below the table's first breakpoint (EPA 1-h O3 < 0.125 ppm,
    24-h SO2 < 305 ppb) the item defines no sub-index (status "below_table").
    """
    table = _table(edition, item)
    c = as_decimal(concentration, item)
    used = truncate(c, table.truncate)
    base = dict(item=item, pollutant=table.pollutant, averaging=table.averaging, unit=table.unit,
                concentration=c, used=used, counted=False, clause=table.clause)
    method_ok = edition.method.verified
    if used > table.c_max:
        rule = edition.rules.get(item)
        if rule is None:
            return SubIndex(**base, value=table.i_max, exact=None, status="beyond_table", row=None, beyond=True,
                            verified=method_ok and table.cell_verified(table.c_max),
                            note=f"above the top breakpoint {fmt(table.c_max)} {table.unit}: beyond the table, "
                                 f"reported as {table.i_max}")
        if rule.action == "fixed":
            return SubIndex(**base, value=rule.index, exact=None, status="fixed", row=None, beyond=False,
                            verified=rule.verified, note=f"above {fmt(rule.above)} {table.unit}: {rule.clause}")
        return SubIndex(**base, value=None, exact=None, status="deferred", row=None, beyond=False,
                        verified=rule.verified, note=f"above {fmt(rule.above)} {table.unit}: {rule.clause}")
    if used < table.c_min:
        return SubIndex(**base, value=None, exact=None, status="below_table", row=None, beyond=False,
                        verified=table.cell_verified(table.c_min),
                        note=f"below {fmt(table.c_min)} {table.unit}: this averaging period defines no index here")
    row = find_row(table, used)
    exact = interpolate(row, used)
    return SubIndex(**base, value=round_index(exact, edition.method.rounding), exact=exact, status="table",
                    row=row, beyond=False, verified=method_ok and table.row_verified(row))


def _table(edition: AqiEdition, item: str) -> BreakpointTable:
    try:
        return edition.tables[item]
    except KeyError:
        raise UnknownItem(f"{edition.standard_id} has no table {item!r}; known: {', '.join(edition.tables)}") from None


def resolve_item(edition: AqiEdition, report: str, name: str) -> str:
    """An input name -> table item: an item itself (pm25_24h) or a bare pollutant (pm25) per the report."""
    rep = edition.reports[report]
    key = name.strip().lower().replace(".", "").replace("-", "_")
    item = key if key in edition.tables else rep.defaults.get(key)
    if item is None:
        names = sorted({*rep.allowed, *rep.defaults})
        raise UnknownItem(f"unknown pollutant {name!r} for {edition.standard_id} {report}; "
                          f"use one of: {', '.join(names)}")
    if item not in rep.allowed:
        raise UnknownItem(f"{item} is not part of the {edition.standard_id} {report} report; "
                          f"use one of: {', '.join(rep.allowed)}")
    return item


def default_report(edition: AqiEdition) -> str:
    return "daily" if "daily" in edition.reports else next(iter(edition.reports))


def compute_aqi(edition: AqiEdition, concentrations: Mapping[str, Number], report: str | None = None) -> AqiResult:
    """The AQI of one set of concentrations (in the edition's table units) under one report.

    Raises UnknownItem for a name the report does not know, ValueError for a bad
    value, InsufficientData when a rule needs an item that was not given or no
    counted sub-index is defined.
    """
    report = report or default_report(edition)
    if report not in edition.reports:
        raise UnknownItem(f"{edition.standard_id} has no {report!r} report; known: {', '.join(edition.reports)}")
    rep = edition.reports[report]
    values: dict[str, Number] = {}
    for name, value in concentrations.items():
        item = resolve_item(edition, report, name)
        if item in values:
            raise ValueError(f"{item} given twice (as {name!r} and another name)")
        values[item] = value
    if not values:
        raise InsufficientData("no concentrations given")
    subs = {item: sub_index(edition, item, v) for item, v in values.items()}
    substituted_from: set[str] = set()
    for item, s in list(subs.items()):
        if s.status != "deferred":
            continue
        if item in rep.items:
            subs[item] = _substitute(edition, s, subs)
            # The substitute's index now stands for the pollutant: count it once, under this item.
            substituted_from.add(edition.rules[item].with_item or "")
        else:
            # A shown-only item: substitute when possible, never fail the report over it.
            try:
                subs[item] = _substitute(edition, s, subs)
            except InsufficientData:
                pass
    subs = {item: replace(s, counted=item in rep.items and item not in substituted_from and s.value is not None)
            for item, s in subs.items()}
    counted = [s for s in subs.values() if s.counted]
    if not counted:
        notes = "; ".join(f"{s.item}: {s.note}" for s in subs.values() if s.note) or "no counted item given"
        raise InsufficientData(f"no sub-index of the {edition.standard_id} {report} report is defined ({notes})")
    aqi = max(s.value for s in counted if s.value is not None)
    m = edition.method
    named = m.primary_above is None or aqi > m.primary_above
    primary = tuple(s.item for s in counted if s.value == aqi) if named else ()
    exceeding = () if m.exceedance_above is None else tuple(
        s.item for s in counted if s.value is not None and s.value > m.exceedance_above)
    return AqiResult(
        family=edition.family, standard=edition.standard, standard_id=edition.standard_id, edition=edition.edition,
        report=report, aqi=aqi, beyond_table=any(s.beyond and s.value == aqi for s in counted),
        category=edition.category(aqi), primary_pollutants=primary, exceeding_pollutants=exceeding,
        sub_indices=tuple(subs.values()),
        verified=m.verified and rep.verified and all(s.verified for s in counted),
    )


def _substitute(edition: AqiEdition, s: SubIndex, subs: Mapping[str, SubIndex]) -> SubIndex:
    rule = edition.rules[s.item]
    with_item = rule.with_item or ""
    other = subs.get(with_item)
    if other is None:
        raise InsufficientData(f"{s.item}={fmt(s.concentration)} {s.unit} is above {fmt(rule.above)} {s.unit}: "
                               f"{rule.clause.rstrip('.')}. Give {with_item} as well.")
    if other.value is not None and other.status in ("table", "beyond_table", "fixed"):
        return replace(s, value=other.value, status="substituted", beyond=other.beyond, source_item=with_item,
                       verified=rule.verified and other.verified,
                       note=f"{s.note}; reported from {with_item} ({other.value})")
    if other.status == "below_table" and rule.below_table_index is not None:
        return replace(s, value=rule.below_table_index, status="substituted", source_item=with_item,
                       verified=rule.verified and rule.below_table_verified,
                       note=f"{s.note}; {with_item} is below its table: index {rule.below_table_index}")
    raise InsufficientData(f"{s.item} is above {fmt(rule.above)} {s.unit} and {with_item} defines no index "
                           f"({other.note}); the {edition.standard_id} index is not defined by these inputs")


# ---------------------------------------------------------------- entry points by family and date


def edition_for(family: str, on: date) -> AqiEdition:
    """The edition of `family` ("china" or "epa") in force on the reading's local date."""
    return registry().aqi_edition(family, on)


def china_aqi(concentrations: Mapping[str, Number], on: date, report: str = "realtime") -> AqiResult:
    """HJ 633 AQI (edition by date). realtime: 1-h concentrations; daily: 24-h means, max 8-h O3."""
    return compute_aqi(edition_for("china", on), concentrations, report)


def china_aqi_realtime(concentrations: Mapping[str, Number], on: date) -> AqiResult:
    return china_aqi(concentrations, on, "realtime")


def china_aqi_daily(concentrations: Mapping[str, Number], on: date) -> AqiResult:
    return china_aqi(concentrations, on, "daily")


def epa_aqi(concentrations: Mapping[str, Number], on: date) -> AqiResult:
    """US EPA daily AQI (2024 table from 2024-05-06, the 2018 TAD table before); EPA table units."""
    return compute_aqi(edition_for("epa", on), concentrations, "daily")


def from_pipeline_units(edition: AqiEdition, concentrations: Mapping[str, Number],
                        report: str | None = None) -> dict[str, Decimal]:
    """Convert readings in the pipeline's units (schemas/parameters.py: ug/m3, CO mg/m3) to the table units."""
    report = report or default_report(edition)
    out: dict[str, Decimal] = {}
    for name, value in concentrations.items():
        item = resolve_item(edition, report, name)
        table = edition.tables[item]
        out[item] = convert(table.pollutant, as_decimal(value, item), PARAMETERS[table.pollutant].unit, table.unit)
    return out
