"""`jointwatch aqi` and `jointwatch water-class`: an index or class from given values.

Standalone click commands (the main CLI group registers them). Every bad input -
unknown pollutant, negative or non-numeric value, bad date, a rule needing a
value that was not given - ends in a one-line click error, exit status 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from decimal import Decimal

import click

from alerts.standards.aqi import AqiResult, InsufficientData, UnknownItem, compute_aqi, fmt, from_pipeline_units
from alerts.standards.tables import StandardLookupError, registry
from alerts.standards.water import WaterResult, water_class

FAMILIES = {"china": "china", "epa": "epa"}


def _pairs(values: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for arg in values:
        name, sep, value = arg.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise click.ClickException(f"{arg!r} is not {what}=VALUE")
        if name.strip().lower() in out:
            raise click.ClickException(f"{name.strip()} given twice")
        out[name.strip().lower()] = value.strip()
    return out


def _day(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"--date: {value!r} is not a date YYYY-MM-DD") from None


def _fail(exc: Exception) -> click.ClickException:
    # One line, no usage block: the message names the value and the rule.
    return click.ClickException(" ".join(str(exc).split()))


def _show(d: Decimal) -> str:
    # Converted values can carry 28 digits; the exact value is still what was used.
    return fmt(d) if -d.as_tuple().exponent <= 6 else f"{d:.6f}".rstrip("0") + "..."  # type: ignore[operator]


@click.command("aqi")
@click.option("--standard", type=click.Choice(sorted(FAMILIES)), default="china", show_default=True,
              help="Index: china = HJ 633 (2012 table before 2026-03-01, 2026 table from then); "
                   "epa = US EPA AQI (2024 table from 2024-05-06, the 2018 TAD table before).")
@click.option("--date", "on", default=None, metavar="YYYY-MM-DD",
              help="Local date of the readings; selects the edition in force then. Default: today.")
@click.option("--report", type=click.Choice(["realtime", "daily"]), default="daily", show_default=True,
              help="china: realtime = 1-h concentrations (hourly report), daily = 24-h means and max 8-h O3. "
                   "epa: daily only.")
@click.option("--units", type=click.Choice(["table", "pipeline"]), default="table", show_default=True,
              help="Units of the values: table = the standard's own (HJ 633: ug/m3, CO mg/m3; EPA: PM ug/m3, "
                   "O3/CO ppm, SO2/NO2 ppb); pipeline = the readings' ug/m3 (CO mg/m3), converted at 25 degC, 1 atm.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result (sub-indices, brackets, clauses) as JSON.")
@click.argument("concentrations", nargs=-1, required=True, metavar="NAME=VALUE...")
def aqi_command(standard: str, on: str | None, report: str, units: str, as_json: bool,
                concentrations: tuple[str, ...]) -> None:
    """Compute an air quality index from concentrations.

    NAME is a pollutant with its averaging period (pm25_24h, pm10_24h, so2_1h,
    so2_24h, no2_1h, no2_24h, co_1h, co_24h, co_8h, o3_1h, o3_8h) or a bare
    pollutant (pm25, pm10, so2, no2, co, o3) meaning the report's usual period.
    Prints each sub-index with its input, the AQI, its category and colour, the
    primary pollutant(s) and the standard edition used.

    \b
    Examples:
      jointwatch aqi --standard china --date 2026-11-22 pm25=80 pm10=140 o3_8h=120
      jointwatch aqi --standard china --report realtime pm25=75 so2=900 so2_24h=300
      jointwatch aqi --standard epa --date 2026-11-22 pm25=35.5 o3=0.071 co=1.1
    """
    values = _pairs(concentrations, "NAME")
    day = _day(on)
    try:
        edition = registry().aqi_edition(FAMILIES[standard], day)
        if report not in edition.reports:
            raise UnknownItem(f"{edition.standard_id} has no {report} report; use --report "
                              f"{' or '.join(edition.reports)}")
        given: dict[str, str | Decimal] = dict(values)
        if units == "pipeline":
            given = dict(from_pipeline_units(edition, values, report))
        result = compute_aqi(edition, given, report)
    except (UnknownItem, InsufficientData, StandardLookupError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps({"date": day.isoformat(), **result.to_dict()}, ensure_ascii=False, indent=2))
        return
    click.echo(_describe_aqi(result, day, edition.effective_from, edition.file.name))


def _describe_aqi(r: AqiResult, on: date, effective_from: date, file: str) -> str:
    lines = [f"{r.standard_id} (edition {r.edition}, in force from {effective_from.isoformat()}), "
             f"{r.report} report, date {on.isoformat()}",
             f"  {'item':<10} {'concentration':<28} {'sub-index':<10} note"]
    for s in r.sub_indices:
        conc = f"{_show(s.concentration)} {s.unit}"
        if s.used != s.concentration:
            conc += f" (-> {_show(s.used)})"
        value = "-" if s.value is None else str(s.value)
        if not s.counted and s.value is not None:
            value += " (not counted)"
        note = s.note or ""
        if not s.verified:
            note = ("unverified cell; " + note).strip("; ")
        lines.append(f"  {s.item:<10} {conc:<28} {value:<10} {note}".rstrip())
    c = r.category
    name = f"{c.name} ({c.local_name})" if c.local_name else c.name
    beyond = ""
    if r.beyond_table:
        what = "the AQI" if r.family == "epa" else "table"
        beyond = f" - beyond {what} (above the top breakpoint)"
    lines.append(f"AQI {r.aqi}{beyond}: level {c.level} {name}, colour {c.colour} ({c.colour_name})")
    lines.append(f"Primary pollutant(s): {', '.join(r.primary_pollutants) or 'none (AQI <= 50)'}")
    if r.exceeding_pollutants:
        lines.append(f"Exceeding pollutant(s): {', '.join(r.exceeding_pollutants)}")
    if not r.verified:
        lines.append(f"Note: some values used are not verified against the standard's text; see {file}.")
    return "\n".join(lines)


@click.command("water-class")
@click.option("--waterbody", type=click.Choice(["river", "lake"]), default="river", show_default=True,
              help="river, or lake (lakes and reservoirs: stricter TP limits, and TN is evaluated).")
@click.option("--date", "on", default=None, metavar="YYYY-MM-DD",
              help="Local date of the samples; selects the edition in force then. Default: today.")
@click.option("--json", "as_json", is_flag=True, help="Print the full result (class per parameter, limits) as JSON.")
@click.argument("values", nargs=-1, required=True, metavar="PARAM=VALUE...")
def water_class_command(waterbody: str, on: str | None, as_json: bool, values: tuple[str, ...]) -> None:
    """Classify surface water under GB 3838-2002 (classes I..V, worse than V).

    PARAM is one of ph, do, codmn, cod, bod5, nh3n, tp, tn (mg/L, pH unitless).
    A value equal to a class limit belongs to that class; DO is "at least", the
    others "at most", pH must be 6..9. The site's class is its worst parameter's;
    the determining parameter(s) are named.

    \b
    Example:
      jointwatch water-class --waterbody river nh3n=1.2 do=4.5 tp=0.25
    """
    given = _pairs(values, "PARAM")
    day = _day(on)
    try:
        std = registry().water_standard(day)
        result = water_class(given, waterbody, std=std)  # type: ignore[arg-type]
    except (StandardLookupError, ValueError) as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return
    click.echo(_describe_water(result))


def _describe_water(r: WaterResult) -> str:
    lines = [f"{r.standard_id} surface water, {r.waterbody if r.waterbody == 'river' else 'lake/reservoir'}",
             f"  {'parameter':<10} {'value':<16} {'class':<14} limit"]
    for p in r.parameters:
        label = p.klass.label if p.klass else "n/a"
        limit = p.limit if p.applicable else f"not evaluated for a {r.waterbody}"
        lines.append(f"  {p.parameter:<10} {fmt(p.value) + ' ' + p.unit:<16} {label:<14} {limit}")
    lines.append(f"Class {r.klass.label} ({r.klass.local_label}), determined by: {', '.join(r.determining)}")
    return "\n".join(lines)
