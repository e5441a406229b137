"""Standards as versioned data: load and validate the YAML editions under data/.

One file is one edition of one standard (HJ 633-2012, HJ 633-2026, US EPA AQI
2018 and 2024, GB 3838-2002). The edition in force is chosen by the reading's
date (`Registry.aqi_edition`). Files are validated once at load - breakpoints
strictly increasing, brackets contiguous (continuous for HJ 633, one truncation
step apart for EPA), index ranges contiguous, categories covering 0..top, rules
pointing at real tables - and every problem is a `ConfigError(file, key, reason)`.

Each table, rule, report and category block carries its clause and a
`verified` flag (inherited from the enclosing mapping, file default at the top);
`AqiEdition.unverified` lists every cell or rule not verified, with the reason
written in the data file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from schemas.errors import ConfigError, read_yaml

DATA_DIR = Path(__file__).with_name("data")

Rounding = Literal["ceil", "half_up"]
Contiguity = Literal["continuous", "discrete"]
WATERBODIES = ("river", "lake")
_COLOUR = re.compile(r"^#[0-9A-F]{6}$")


class StandardLookupError(LookupError):
    """No edition of the requested standard is in force on the requested date."""


@dataclass(frozen=True)
class Unverified:
    """One value or rule of an edition that was not verified against the standard's text."""

    key: str
    what: str
    reason: str


@dataclass(frozen=True)
class Row:
    """One bracket: concentrations [c_lo, c_hi] map linearly onto indices [i_lo, i_hi]."""

    c_lo: Decimal
    c_hi: Decimal
    i_lo: int
    i_hi: int


@dataclass(frozen=True)
class BreakpointTable:
    item: str  # pollutant + averaging period, e.g. "pm25_24h"
    pollutant: str
    averaging: str
    unit: str
    truncate: int | None  # decimals the input is truncated to before lookup (EPA); None: used as given
    rows: tuple[Row, ...]
    clause: str
    verified: bool
    reason: str | None
    verified_breakpoints: frozenset[Decimal]

    @property
    def c_min(self) -> Decimal:
        return self.rows[0].c_lo

    @property
    def c_max(self) -> Decimal:
        return self.rows[-1].c_hi

    @property
    def i_max(self) -> int:
        return self.rows[-1].i_hi

    def breakpoints(self) -> tuple[Decimal, ...]:
        return tuple(sorted({c for r in self.rows for c in (r.c_lo, r.c_hi)}))

    def cell_verified(self, c: Decimal) -> bool:
        return self.verified or c in self.verified_breakpoints

    def row_verified(self, row: Row) -> bool:
        return self.cell_verified(row.c_lo) and self.cell_verified(row.c_hi)


@dataclass(frozen=True)
class AboveTableRule:
    """What applies when `item` exceeds `above` (the top of its table).

    substitute: the item has no sub-index of its own; the pollutant's sub-index is
    the one of `with_item` (and `below_table_index` when that one is below its
    own table). fixed: the sub-index is `index`.
    """

    item: str
    above: Decimal
    action: Literal["substitute", "fixed"]
    with_item: str | None
    index: int | None
    below_table_index: int | None
    below_table_verified: bool
    clause: str
    verified: bool
    reason: str | None


@dataclass(frozen=True)
class Report:
    """Which items a report (real-time, daily) counts, shows, or only reads for a rule."""

    name: str
    items: tuple[str, ...]
    reported: tuple[str, ...]
    supporting: tuple[str, ...]
    defaults: Mapping[str, str]
    clause: str
    verified: bool

    @property
    def allowed(self) -> tuple[str, ...]:
        return self.items + self.reported + self.supporting


@dataclass(frozen=True)
class Category:
    level: int
    low: int
    high: int
    name: str
    local_name: str | None
    colour: str
    colour_name: str


@dataclass(frozen=True)
class Method:
    rounding: Rounding
    contiguity: Contiguity
    index_top: int
    primary_above: int | None  # None: the highest sub-index is always named
    exceedance_above: int | None
    clauses: Mapping[str, str]
    verified: bool


@dataclass(frozen=True)
class AqiEdition:
    file: Path
    family: str
    standard: str
    standard_id: str
    edition: str
    title: str
    effective_from: date
    source: str
    method: Method
    tables: Mapping[str, BreakpointTable]
    rules: Mapping[str, AboveTableRule]  # keyed by the item they apply to
    reports: Mapping[str, Report]
    categories: tuple[Category, ...]
    categories_clause: str
    validity: Mapping[str, Any]
    unverified: tuple[Unverified, ...]

    def category(self, index: int) -> Category:
        for c in self.categories:
            if c.low <= index <= c.high:
                return c
        raise ValueError(f"{self.standard_id}: index {index} outside 0..{self.method.index_top}")


@dataclass(frozen=True)
class WaterClass:
    number: int
    label: str
    local_label: str


@dataclass(frozen=True)
class WaterParameter:
    key: str
    name: str
    unit: str
    direction: Literal["max", "min", "range"]
    limits: Mapping[str, tuple[Decimal, ...]]  # waterbody -> limit per class (empty for "range")
    range: tuple[Decimal, Decimal] | None
    applies_to: frozenset[str]
    clause: str
    verified: bool


@dataclass(frozen=True)
class WaterStandard:
    file: Path
    family: str
    standard: str
    standard_id: str
    edition: str
    title: str
    effective_from: date
    source: str
    classes: tuple[WaterClass, ...]
    worse: WaterClass
    parameters: Mapping[str, WaterParameter]
    unverified: tuple[Unverified, ...]


# ---------------------------------------------------------------- parsing helpers


def _read(file: Path) -> Any:
    try:
        return read_yaml(file)
    except ConfigError:
        raise
    except ValueError as exc:  # PyYAML raises plain ValueError for e.g. an impossible date
        raise ConfigError(file, "<yaml>", str(exc)) from None


class _Ctx:
    """Which file is being read, and the unverified values found so far."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self.unverified: list[Unverified] = []

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(self.file, key, reason)

    def mapping(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping, got {type(value).__name__}")
        return value

    def require(self, m: Mapping[str, Any], name: str, key: str) -> Any:
        if name not in m or m[name] is None:
            raise self.error(f"{key}.{name}" if key else name, "is required")
        return m[name]

    def text(self, m: Mapping[str, Any], name: str, key: str, default: str | None = None) -> str:
        value = m.get(name, default)
        if value is None:
            raise self.error(f"{key}.{name}" if key else name, "is required")
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{key}.{name}" if key else name, "must be a non-empty string")
        return value.strip()

    def integer(self, value: Any, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        return value

    def decimal(self, value: Any, key: str) -> Decimal:
        # Floats are read through their shortest repr, so 35.4 in YAML is exactly 35.4.
        if isinstance(value, bool):
            raise self.error(key, f"must be a number, got {value!r}")
        d: Decimal | None = None
        try:
            if isinstance(value, float):
                d = Decimal(repr(value))
            elif isinstance(value, (int, str)):
                d = Decimal(value)
        except InvalidOperation:
            d = None
        if d is None or not d.is_finite():
            raise self.error(key, f"must be a finite number, got {value!r}")
        return d

    def day(self, value: Any, key: str) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            raise self.error(key, f"must be a date YYYY-MM-DD, got {value!r}") from None

    def verified(self, m: Mapping[str, Any], key: str, inherited: bool) -> bool:
        value = m.get("verified", inherited)
        if not isinstance(value, bool):
            raise self.error(f"{key}.verified" if key else "verified", "must be true or false")
        return value

    def reason(self, m: Mapping[str, Any], key: str, inherited: str | None) -> str:
        value = m.get("reason", inherited)
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"{key}.reason" if key else "reason", "an unverified value needs a reason")
        return " ".join(value.split())

    def note_unverified(self, key: str, what: str, reason: str) -> None:
        self.unverified.append(Unverified(key, what, reason))


def _fmt(d: Decimal) -> str:
    return format(d.normalize(), "f") if d == d.to_integral_value() else str(d)


def _header(ctx: _Ctx, raw: Mapping[str, Any], kind: str) -> dict[str, Any]:
    if raw.get("kind") != kind:
        raise ctx.error("kind", f"must be {kind!r}, got {raw.get('kind')!r}")
    eff = ctx.mapping(ctx.require(raw, "effective", ""), "effective")
    top_verified = ctx.verified(raw, "", True)
    top_reason = raw.get("reason")
    if not top_verified:
        top_reason = ctx.reason(raw, "", None)
    if not ctx.verified(eff, "effective", True):
        ctx.note_unverified("effective.from", str(eff.get("from")), ctx.reason(eff, "effective", None))
    edition = raw.get("edition")
    if not isinstance(edition, (str, int)) or isinstance(edition, bool) or not str(edition).strip():
        raise ctx.error("edition", "is required (a string such as \"2012\")")
    return {
        "family": ctx.text(raw, "family", ""),
        "standard": ctx.text(raw, "standard", ""),
        "standard_id": ctx.text(raw, "standard_id", ""),
        "edition": str(edition),
        "title": ctx.text(raw, "title", ""),
        "effective_from": ctx.day(ctx.require(eff, "from", "effective"), "effective.from"),
        "source": " ".join(ctx.text(raw, "source", "").split()),
        "verified": top_verified,
        "reason": top_reason,
    }


# ---------------------------------------------------------------- AQI editions


def _method(ctx: _Ctx, raw: Mapping[str, Any], verified: bool, reason: str | None) -> Method:
    m = ctx.mapping(ctx.require(raw, "method", ""), "method")
    rounding = m.get("rounding")
    if rounding not in ("ceil", "half_up"):
        raise ctx.error("method.rounding", f"must be 'ceil' or 'half_up', got {rounding!r}")
    contiguity = m.get("contiguity")
    if contiguity not in ("continuous", "discrete"):
        raise ctx.error("method.contiguity", f"must be 'continuous' or 'discrete', got {contiguity!r}")
    top = ctx.integer(ctx.require(m, "index_top", "method"), "method.index_top")
    if top <= 0:
        raise ctx.error("method.index_top", "must be positive")
    if m.get("beyond_top", "cap") != "cap":
        raise ctx.error("method.beyond_top", "only 'cap' (report the top index, flagged) is supported")
    optional = {}
    for name in ("primary_above", "exceedance_above"):
        value = m.get(name)
        optional[name] = None if value is None else ctx.integer(value, f"method.{name}")
    m_verified = ctx.verified(m, "method", verified)
    if not m_verified:
        ctx.note_unverified("method", "rounding, aggregation, primary/exceeding pollutant and beyond-table rules",
                            ctx.reason(m, "method", reason))
    clauses = {k: " ".join(str(v).split()) for k, v in m.items() if k.endswith("_clause")}
    return Method(rounding, contiguity, top, optional["primary_above"], optional["exceedance_above"],
                  MappingProxyType(clauses), m_verified)


def _rows(ctx: _Ctx, raw_rows: Any, key: str, method: Method, truncate: int | None) -> tuple[Row, ...]:
    if not isinstance(raw_rows, list) or not raw_rows:
        raise ctx.error(f"{key}.rows", "must be a non-empty list of [c_lo, c_hi, i_lo, i_hi]")
    rows: list[Row] = []
    step = Decimal(1).scaleb(-truncate) if truncate is not None else None
    for n, raw in enumerate(raw_rows):
        rk = f"{key}.rows[{n}]"
        if not isinstance(raw, list) or len(raw) != 4:
            raise ctx.error(rk, "must be [c_lo, c_hi, i_lo, i_hi]")
        c_lo, c_hi = ctx.decimal(raw[0], rk), ctx.decimal(raw[1], rk)
        i_lo, i_hi = ctx.integer(raw[2], rk), ctx.integer(raw[3], rk)
        if c_lo < 0 or not c_lo < c_hi:
            raise ctx.error(rk, f"concentrations must satisfy 0 <= low < high, got {_fmt(c_lo)}..{_fmt(c_hi)}")
        if not 0 <= i_lo < i_hi <= method.index_top:
            raise ctx.error(rk, f"indices must satisfy 0 <= low < high <= {method.index_top}, got {i_lo}..{i_hi}")
        if step is not None and any(c != c.quantize(step) for c in (c_lo, c_hi)):
            raise ctx.error(rk, f"breakpoints must have at most {truncate} decimals (the truncation step)")
        if rows:
            prev = rows[-1]
            if method.contiguity == "continuous":
                want_c, want_i = prev.c_hi, prev.i_hi
            else:
                want_c, want_i = prev.c_hi + step, prev.i_hi + 1  # type: ignore[operator]
            if c_lo != want_c:
                raise ctx.error(rk, f"breakpoints not contiguous/monotonic: low {_fmt(c_lo)} should be {_fmt(want_c)}")
            if i_lo != want_i:
                raise ctx.error(rk, f"index ranges not contiguous: low {i_lo} should be {want_i}")
        elif method.contiguity == "continuous" and (c_lo != 0 or i_lo != 0):
            raise ctx.error(rk, "a continuous table starts at concentration 0, index 0")
        rows.append(Row(c_lo, c_hi, i_lo, i_hi))
    return tuple(rows)


def _table(ctx: _Ctx, item: str, m: Mapping[str, Any], method: Method, verified: bool, reason: str | None,
           base: BreakpointTable | None) -> BreakpointTable:
    key = f"tables.{item}"
    clause = " ".join(ctx.text(m, "clause", key).split())
    t_verified = ctx.verified(m, key, base.verified if base else verified)
    t_reason = (ctx.reason(m, key, base.reason if base and not base.verified else reason)
                if not t_verified else None)
    if base is not None:
        averaging = ctx.text(m, "averaging", key)
        # Cells verified in the base column stay verified unless this use of it is itself unverified.
        cells = base.verified_breakpoints if t_verified == base.verified else frozenset()
        return BreakpointTable(item, base.pollutant, averaging, base.unit, base.truncate, base.rows, clause,
                               t_verified, t_reason, cells)
    truncate = m.get("truncate")
    if method.contiguity == "discrete":
        truncate = ctx.integer(ctx.require(m, "truncate", key), f"{key}.truncate")
        if not 0 <= truncate <= 6:
            raise ctx.error(f"{key}.truncate", "must be 0..6 decimals")
    elif truncate is not None:
        raise ctx.error(f"{key}.truncate", "continuous tables are not truncated")
    rows = _rows(ctx, m.get("rows"), key, method, truncate)
    vb_raw = m.get("verified_breakpoints", [])
    if not isinstance(vb_raw, list):
        raise ctx.error(f"{key}.verified_breakpoints", "must be a list of breakpoint concentrations")
    vbs = frozenset(ctx.decimal(v, f"{key}.verified_breakpoints") for v in vb_raw)
    table = BreakpointTable(item, ctx.text(m, "pollutant", key), ctx.text(m, "averaging", key),
                            ctx.text(m, "unit", key), truncate, rows, clause, t_verified, t_reason, vbs)
    stray = vbs - set(table.breakpoints())
    if stray:
        raise ctx.error(f"{key}.verified_breakpoints", f"not breakpoints of this table: {sorted(map(_fmt, stray))}")
    return table


def _tables(ctx: _Ctx, raw: Mapping[str, Any], method: Method, verified: bool,
            reason: str | None) -> dict[str, BreakpointTable]:
    spec = ctx.mapping(ctx.require(raw, "tables", ""), "tables")
    tables: dict[str, BreakpointTable] = {}
    # Tables with their own rows first, so `same_as` can refer to any of them.
    for item, m in sorted(spec.items(), key=lambda kv: isinstance(kv[1], Mapping) and "same_as" in kv[1]):
        m = ctx.mapping(m, f"tables.{item}")
        base = None
        if "same_as" in m:
            target = m["same_as"]
            if target not in tables:
                raise ctx.error(f"tables.{item}.same_as", f"unknown table {target!r} (or it is itself a same_as)")
            base = tables[target]
        tables[item] = _table(ctx, item, m, method, verified, reason, base)
    for item, t in tables.items():
        bad = [bp for bp in t.breakpoints() if not t.cell_verified(bp)]
        if bad:
            what = f"breakpoints {', '.join(_fmt(b) for b in bad)} {t.unit}"
            ctx.note_unverified(f"tables.{item}", what, t.reason or "unverified")
    return tables


def _rules(ctx: _Ctx, raw: Mapping[str, Any], tables: Mapping[str, BreakpointTable], method: Method,
           verified: bool, reason: str | None) -> dict[str, AboveTableRule]:
    spec = raw.get("rules", []) or []
    if not isinstance(spec, list):
        raise ctx.error("rules", "must be a list")
    rules: dict[str, AboveTableRule] = {}
    for n, m in enumerate(spec):
        key = f"rules[{n}]"
        m = ctx.mapping(m, key)
        item = ctx.text(m, "item", key)
        if item not in tables:
            raise ctx.error(f"{key}.item", f"unknown table {item!r}")
        if item in rules:
            raise ctx.error(f"{key}.item", f"second rule for {item!r}")
        above = ctx.decimal(ctx.require(m, "above", key), f"{key}.above")
        if above != tables[item].c_max:
            raise ctx.error(f"{key}.above", f"must equal the top of table {item} ({_fmt(tables[item].c_max)})")
        action = m.get("action")
        with_item = index = below_index = None
        below_verified = True
        if action == "substitute":
            with_item = ctx.text(m, "with_item", key)
            if with_item not in tables or with_item == item:
                raise ctx.error(f"{key}.with_item", f"must name another table, got {with_item!r}")
            if "with_item_below_table" in m:
                b = ctx.mapping(m["with_item_below_table"], f"{key}.with_item_below_table")
                below_index = ctx.integer(ctx.require(b, "index", f"{key}.with_item_below_table"),
                                          f"{key}.with_item_below_table.index")
                below_verified = ctx.verified(b, f"{key}.with_item_below_table", verified)
                if not below_verified:
                    what = f"{item} above {_fmt(above)} with {with_item} below its table -> index {below_index}"
                    ctx.note_unverified(f"{key}.with_item_below_table", what,
                                        ctx.reason(b, f"{key}.with_item_below_table", reason))
        elif action == "fixed":
            index = ctx.integer(ctx.require(m, "index", key), f"{key}.index")
            if not 0 <= index <= method.index_top:
                raise ctx.error(f"{key}.index", f"must be 0..{method.index_top}")
        else:
            raise ctx.error(f"{key}.action", f"must be 'substitute' or 'fixed', got {action!r}")
        r_verified = ctx.verified(m, key, verified)
        r_reason = ctx.reason(m, key, reason) if not r_verified else None
        if r_reason:
            ctx.note_unverified(key, f"{item} above {_fmt(above)} {tables[item].unit}: {action}"
                                + (f" {with_item}" if with_item else f" index {index}"), r_reason)
        rules[item] = AboveTableRule(item, above, action, with_item, index, below_index, below_verified,
                                     " ".join(ctx.text(m, "clause", key).split()), r_verified, r_reason)
    for item, t in tables.items():
        if t.i_max < method.index_top and item not in rules:
            raise ctx.error(f"tables.{item}",
                            f"ends at index {t.i_max} < {method.index_top}: needs an above-table rule")
    return rules


def _reports(ctx: _Ctx, raw: Mapping[str, Any], tables: Mapping[str, BreakpointTable], verified: bool,
             reason: str | None) -> dict[str, Report]:
    spec = ctx.mapping(ctx.require(raw, "reports", ""), "reports")
    reports: dict[str, Report] = {}
    for name, m in spec.items():
        key = f"reports.{name}"
        m = ctx.mapping(m, key)
        lists: dict[str, tuple[str, ...]] = {}
        for part in ("items", "reported", "supporting"):
            value = m.get(part, []) or []
            if not isinstance(value, list) or any(v not in tables for v in value):
                raise ctx.error(f"{key}.{part}", f"must be a list of table names, got {value!r}")
            lists[part] = tuple(value)
        if not lists["items"]:
            raise ctx.error(f"{key}.items", "must name at least one table")
        allowed = lists["items"] + lists["reported"] + lists["supporting"]
        if len(set(allowed)) != len(allowed):
            raise ctx.error(key, "an item is listed twice among items/reported/supporting")
        defaults = ctx.mapping(m.get("defaults", {}) or {}, f"{key}.defaults")
        for pollutant, item in defaults.items():
            if item not in allowed or tables[item].pollutant != pollutant:
                raise ctx.error(f"{key}.defaults.{pollutant}", f"must name an allowed {pollutant} item, got {item!r}")
        r_verified = ctx.verified(m, key, verified)
        if not r_verified:
            ctx.note_unverified(key, "which items the report counts", ctx.reason(m, key, reason))
        reports[name] = Report(name, lists["items"], lists["reported"], lists["supporting"],
                               MappingProxyType(dict(defaults)), " ".join(ctx.text(m, "clause", key).split()),
                               r_verified)
    return reports


def _categories(ctx: _Ctx, raw: Mapping[str, Any], top: int, verified: bool,
                reason: str | None) -> tuple[tuple[Category, ...], str]:
    m = ctx.mapping(ctx.require(raw, "categories", ""), "categories")
    levels = m.get("levels")
    if not isinstance(levels, list) or not levels:
        raise ctx.error("categories.levels", "must be a non-empty list")
    cats: list[Category] = []
    for n, c in enumerate(levels):
        key = f"categories.levels[{n}]"
        c = ctx.mapping(c, key)
        low, high = ctx.integer(c.get("low"), f"{key}.low"), ctx.integer(c.get("high"), f"{key}.high")
        want = cats[-1].high + 1 if cats else 0
        if low != want or high < low:
            raise ctx.error(key, f"category ranges must be contiguous from 0: expected low {want}, got {low}..{high}")
        colour = ctx.text(c, "colour", key)
        if not _COLOUR.match(colour):
            raise ctx.error(f"{key}.colour", f"must be #RRGGBB (upper case), got {colour!r}")
        local = c.get("local_name")
        cats.append(Category(ctx.integer(c.get("level"), f"{key}.level"), low, high, ctx.text(c, "name", key),
                             str(local) if local is not None else None, colour, ctx.text(c, "colour_name", key)))
    if cats[-1].high != top:
        raise ctx.error("categories.levels", f"must end at the top index {top}, ends at {cats[-1].high}")
    if not ctx.verified(m, "categories", verified):
        ctx.note_unverified("categories", "category names, ranges and colours", ctx.reason(m, "categories", reason))
    return tuple(cats), " ".join(ctx.text(m, "clause", "categories").split())


def _validity(ctx: _Ctx, raw: Mapping[str, Any], verified: bool, reason: str | None) -> Mapping[str, Any]:
    m = ctx.mapping(raw.get("validity", {}) or {}, "validity")
    block_verified = ctx.verified(m, "validity", verified)
    for name, rule in m.items():
        if isinstance(rule, Mapping) and not ctx.verified(rule, f"validity.{name}", block_verified):
            what = ", ".join(f"{k}={v}" for k, v in rule.items() if k not in ("verified", "reason", "basis"))
            ctx.note_unverified(f"validity.{name}", what, ctx.reason(rule, f"validity.{name}", reason))
    return MappingProxyType(dict(m))


def load_aqi_edition(path: str | Path) -> AqiEdition:
    """Read and validate one AQI edition file; raises ConfigError naming the file and key."""
    file = Path(path)
    ctx = _Ctx(file)
    raw = ctx.mapping(_read(file), "<file>")
    head = _header(ctx, raw, "aqi")
    verified, reason = head.pop("verified"), head.pop("reason")
    method = _method(ctx, raw, verified, reason)
    tables = _tables(ctx, raw, method, verified, reason)
    rules = _rules(ctx, raw, tables, method, verified, reason)
    reports = _reports(ctx, raw, tables, verified, reason)
    categories, cat_clause = _categories(ctx, raw, method.index_top, verified, reason)
    validity = _validity(ctx, raw, verified, reason)
    return AqiEdition(file=file, **head, method=method, tables=MappingProxyType(tables),
                      rules=MappingProxyType(rules), reports=MappingProxyType(reports), categories=categories,
                      categories_clause=cat_clause, validity=validity, unverified=tuple(ctx.unverified))


# ---------------------------------------------------------------- water


def _water_parameter(ctx: _Ctx, key_name: str, m: Mapping[str, Any], n_classes: int, verified: bool,
                     reason: str | None) -> WaterParameter:
    key = f"parameters.{key_name}"
    direction = m.get("direction")
    limits: dict[str, tuple[Decimal, ...]] = {}
    rng = None
    if direction == "range":
        r = m.get("range")
        if not isinstance(r, list) or len(r) != 2:
            raise ctx.error(f"{key}.range", "must be [low, high]")
        rng = (ctx.decimal(r[0], f"{key}.range"), ctx.decimal(r[1], f"{key}.range"))
        if not rng[0] < rng[1]:
            raise ctx.error(f"{key}.range", "low must be below high")
    elif direction in ("max", "min"):
        default = m.get("limits")
        by_body = ctx.mapping(m.get("limits_by_waterbody", {}) or {}, f"{key}.limits_by_waterbody")
        for body in by_body:
            if body not in WATERBODIES:
                raise ctx.error(f"{key}.limits_by_waterbody.{body}", f"waterbody must be one of {WATERBODIES}")
        for body in WATERBODIES:
            lk = f"{key}.limits_by_waterbody.{body}" if body in by_body else f"{key}.limits"
            values = by_body.get(body, default)
            if not isinstance(values, list) or len(values) != n_classes:
                raise ctx.error(lk, f"must list one limit per class ({n_classes})")
            lim = tuple(ctx.decimal(v, lk) for v in values)
            # A worse class never has a stricter limit: <= limits rise, >= limits fall.
            pairs = list(zip(lim, lim[1:]))
            ordered = all(a <= b for a, b in pairs) if direction == "max" else all(a >= b for a, b in pairs)
            if not ordered or any(v < 0 for v in lim):
                trend = "non-decreasing" if direction == "max" else "non-increasing"
                raise ctx.error(lk, f"limits must be non-negative and {trend} from class I to V")
            limits[body] = lim
    else:
        raise ctx.error(f"{key}.direction", f"must be 'max', 'min' or 'range', got {direction!r}")
    applies = m.get("applies_to", list(WATERBODIES))
    if not isinstance(applies, list) or not applies or any(a not in WATERBODIES for a in applies):
        raise ctx.error(f"{key}.applies_to", f"must be a non-empty list of {WATERBODIES}")
    p_verified = ctx.verified(m, key, verified)
    if not p_verified:
        ctx.note_unverified(key, "class limits", ctx.reason(m, key, reason))
    return WaterParameter(key_name, ctx.text(m, "name", key), ctx.text(m, "unit", key), direction,
                          MappingProxyType(limits), rng, frozenset(applies),
                          " ".join(ctx.text(m, "clause", key).split()), p_verified)


def load_water_standard(path: str | Path) -> WaterStandard:
    """Read and validate one surface-water standard file; raises ConfigError naming the file and key."""
    file = Path(path)
    ctx = _Ctx(file)
    raw = ctx.mapping(_read(file), "<file>")
    head = _header(ctx, raw, "water")
    verified, reason = head.pop("verified"), head.pop("reason")
    spec = raw.get("classes")
    if not isinstance(spec, list) or not spec:
        raise ctx.error("classes", "must be a non-empty list")
    classes = []
    for n, c in enumerate(spec):
        c = ctx.mapping(c, f"classes[{n}]")
        number = ctx.integer(c.get("class"), f"classes[{n}].class")
        if number != n + 1:
            raise ctx.error(f"classes[{n}].class", f"classes must be numbered 1.. in order, expected {n + 1}")
        key = f"classes[{n}]"
        classes.append(WaterClass(number, ctx.text(c, "label", key), ctx.text(c, "local_label", key)))
    w = ctx.mapping(ctx.require(raw, "worse_than_last", ""), "worse_than_last")
    worse = WaterClass(ctx.integer(w.get("class"), "worse_than_last.class"), ctx.text(w, "label", "worse_than_last"),
                       ctx.text(w, "local_label", "worse_than_last"))
    if worse.number != len(classes) + 1:
        raise ctx.error("worse_than_last.class", f"must be {len(classes) + 1}")
    params_raw = ctx.mapping(ctx.require(raw, "parameters", ""), "parameters")
    params = {name: _water_parameter(ctx, name, ctx.mapping(m, f"parameters.{name}"), len(classes), verified, reason)
              for name, m in params_raw.items()}
    return WaterStandard(file=file, **head, classes=tuple(classes), worse=worse,
                         parameters=MappingProxyType(params), unverified=tuple(ctx.unverified))


# ---------------------------------------------------------------- registry


@dataclass(frozen=True)
class Registry:
    """Every edition found under one data directory, chosen by family and date."""

    aqi: tuple[AqiEdition, ...]
    water: tuple[WaterStandard, ...]

    def aqi_families(self) -> tuple[str, ...]:
        return tuple(sorted({e.family for e in self.aqi}))

    def aqi_editions(self, family: str) -> tuple[AqiEdition, ...]:
        found = tuple(sorted((e for e in self.aqi if e.family == family), key=lambda e: e.effective_from))
        if not found:
            raise StandardLookupError(f"no AQI standard {family!r}; known: {', '.join(self.aqi_families())}")
        return found

    def aqi_edition(self, family: str, on: date) -> AqiEdition:
        """The edition in force on `on` (the reading's local date): the latest effective_from <= on."""
        return _in_force(self.aqi_editions(family), on, family)

    def water_standard(self, on: date) -> WaterStandard:
        return _in_force(tuple(sorted(self.water, key=lambda e: e.effective_from)), on, "surface water")


def _in_force(editions: tuple[Any, ...], on: date, what: str) -> Any:
    current = [e for e in editions if e.effective_from <= on]
    if not current:
        first = editions[0] if editions else None
        earliest = f" (earliest: {first.standard_id} from {first.effective_from.isoformat()})" if first else ""
        raise StandardLookupError(f"no {what} edition in force on {on.isoformat()}{earliest}")
    return current[-1]


def load_registry(data_dir: str | Path = DATA_DIR) -> Registry:
    """Load every *.yaml under data_dir (dispatching on `kind`) and check editions don't collide."""
    aqi: list[AqiEdition] = []
    water: list[WaterStandard] = []
    for file in sorted(Path(data_dir).glob("*.yaml")):
        raw = _read(file)
        kind = raw.get("kind") if isinstance(raw, Mapping) else None
        if kind == "aqi":
            aqi.append(load_aqi_edition(file))
        elif kind == "water":
            water.append(load_water_standard(file))
        else:
            raise ConfigError(file, "kind", f"must be 'aqi' or 'water', got {kind!r}")
    seen: dict[tuple[str, date], Path] = {}
    for e in [*aqi, *water]:
        slot = (e.family, e.effective_from)
        if slot in seen:
            raise ConfigError(e.file, "effective.from", f"same family and date as {seen[slot].name}")
        seen[slot] = e.file
    return Registry(tuple(aqi), tuple(water))


@functools.cache
def registry() -> Registry:
    """The packaged editions, loaded and validated once per process."""
    return load_registry(DATA_DIR)
