"""`jointwatch apportion …` and `jointwatch apportion-stage`: run the apportionment stage, and print a
region's latest apportionment of one kind as a table: where its air came from (transport), what its
river reaches added (water_reach), or its latest hour split over source-type factors (source_factor)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import click
from confluent_kafka import Consumer, TopicPartition

from apportion.geometry import COMPASS16
from connectors.kafka_io import consumer_config
from jointwatch.cli_options import make_settings, namespace_option, run_stage, stack_options
from jointwatch.settings import Settings
from schemas.apportionment import Apportionment
from schemas.topics import APPORTIONMENT, namespaced

TAIL_FIRST = 200  # records read back from each partition's end before reading further back
KINDS = ("transport", "water_reach", "source_factor")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="minutes").replace("+00:00", "Z")


def _read_range(consumer: Consumer, topic: str, partition: int, begin: int, end: int, timeout_s: float = 20.0) -> list[Any]:
    """Decoded values at offsets [begin, end) of one partition."""
    consumer.assign([TopicPartition(topic, partition, begin)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    offset = begin
    while offset < end:
        if time.monotonic() > deadline:
            raise click.ClickException(f"{topic}[{partition}]: offsets {begin}..{end} not read within {timeout_s:.0f} s")
        for msg in consumer.consume(500, timeout=1.0):
            if msg.error() or msg.offset() is None or msg.offset() >= end:
                continue
            offset = max(offset, msg.offset() + 1)
            try:
                out.append(json.loads(msg.value() or b"null"))
            except ValueError:
                continue  # not ours to judge here; the stage only writes valid records
    return out


def _wanted(rec: Any, region: str, kind: str, pollutant: str | None) -> bool:
    """A record of the region and kind (for transport the region-scope one), and of the pollutant if given."""
    return (isinstance(rec, dict) and rec.get("kind") == kind and rec.get("region") == region
            and (kind != "transport" or rec.get("scope") == "region") and (pollutant is None or rec.get("pollutant") == pollutant))


def latest_window(settings: Settings, region: str, kind: str = "transport", pollutant: str | None = None) -> list[Apportionment]:
    """The region's records of `kind` (of one pollutant, if given) with the latest window_end, each once.

    The topic is a log keyed by region and the stage emits windows in order, so a region's newest
    records are at its partition's end: read back from there in growing chunks until a chunk holds an
    older window of the kind (every record of the latest one lies after it) or the partition's start.
    A restarted stage may have published a window twice (same record ids). No consumer group offsets are used.
    """
    topic = namespaced(APPORTIONMENT, settings.namespace)
    consumer = Consumer(consumer_config(settings.kafka_bootstrap, f"jw-apportion-show-{uuid.uuid4().hex[:8]}"))
    best: dict[str, Apportionment] = {}
    best_window = -1
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise click.ClickException(f"topic {topic} does not exist (is the apportionment stage running?)")
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            end, chunk = high, TAIL_FIRST
            window: int | None = None
            found: dict[str, Apportionment] = {}
            while end > low:
                begin = max(low, end - chunk)
                recs = [r for r in _read_range(consumer, topic, partition, begin, end) if _wanted(r, region, kind, pollutant)]
                if recs:
                    window = max(r["window_end"] for r in recs) if window is None else window
                    found.update({r["record_id"]: r for r in recs if r["window_end"] == window})
                    if any(r["window_end"] < window for r in recs):
                        break
                end, chunk = begin, chunk * 4
            if window is not None and window > best_window:
                best, best_window = found, window
    finally:
        consumer.close()
    return sorted(best.values(), key=lambda r: (r["receptor"], r["pollutant"]))


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def render(rec: Apportionment) -> str:
    """A transport record as the table `apportion show` prints."""
    hours = (rec["window_end"] - rec["window_start"]) / 3_600_000
    fit = rec["fit"]
    keys = sorted(rec["shares"], key=lambda k: (k == "local", -rec["shares"][k], k))  # origins by share, local last
    rows = []
    for k in keys:
        u = rec["uncertainty"].get(k)
        rows.append((k, f"{rec['shares'][k]:.3f}", f"{u['lo']:.3f} .. {u['hi']:.3f}" if u else "-", f"{u['sd']:.3f}" if u else "-",
                     f"{rec['amounts'][k]:.2f}" if k in rec["amounts"] else "-"))
    prov = rec["provenance"]
    lines = [
        f"{rec['region']} {rec['pollutant']}: window {_iso(rec['window_start'])} .. {_iso(rec['window_end'])} ({hours:g} h)",
        f"origin: {rec['origin_region'] or 'none (no external region significant)'}"
        + (f"  -> affected: {', '.join(rec['affected_regions'])}" if rec["affected_regions"] else ""),
        "",
        _table(("from", "share", "5-95 % interval", "sd", "amount"), rows),
        "",
        f"fit: r2 {fit['r2']:.3f}, rmse {fit['rmse']:.3f}, steps {fit['n_steps']}" if fit["r2"] is not None and fit["rmse"] is not None
        else f"fit: steps {fit['n_steps']}",
    ]
    if prov["stations"]:
        lines += ["", "stations used (over the region's receptors):", _table(("station", "region", "receptors", "lag h", "km", "wind from"), _station_rows(rec))]
    else:
        lines += ["", "stations used: none (no upwind station of another region co-varied with the receptor)"]
    lines += ["", f"model {prov['model_version']}, seed {prov['seed']}, record {rec['record_id']}"]
    return "\n".join(lines)


def _range(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return format(lo, fmt) if lo == hi else f"{format(lo, fmt)}-{format(hi, fmt)}"


def _station_rows(rec: Apportionment) -> list[tuple[str, ...]]:
    """One row per upwind station: a region record lists it once per receptor that used it (its
    lag, distance and sector differ by receptor), so show how many, and the ranges."""
    by: dict[str, list[Any]] = {}
    for u in rec["provenance"]["stations"]:
        by.setdefault(u["station_id"], []).append(u)
    rows = []
    for station, uses in by.items():
        sectors = sorted({u["wind_sector"] for u in uses if u["wind_sector"]}, key=COMPASS16.index)
        rows.append((station, uses[0]["region"], str(len(uses)), _range([u["lag_h"] for u in uses], "g"),
                     _range([u["distance_km"] for u in uses], ".0f"), "/".join(sectors) or "-"))
    return rows


@click.group("apportion")
def apportion() -> None:
    """Source apportionment: where each region's pollution came from (jw.apportionment)."""


def render_reaches(records: list[Apportionment]) -> str:
    """A region's reach records of one window: per reach and parameter what it added and who answers for it."""
    first = records[0]
    hours = (first["window_end"] - first["window_start"]) / 3_600_000
    rows = []
    for r in records:
        added = f"{sum(r['amounts'].values()):.3f}" if r["amounts"] else "no data"
        responsible = ", ".join(f"{k} {v:.0%}" for k, v in r["shares"].items())
        rows.append((r["receptor"], r["pollutant"], added, r["unit"], r["basis"], responsible, f"{r['provenance']['stations'][0]['lag_h']:g}",
                     str(r["fit"]["n_steps"]), ", ".join(r["affected_regions"]) or "-"))
    return "\n".join([
        f"{first['region']} river reaches (from its sections downstream): "
        f"window {_iso(first['window_start'])} .. {_iso(first['window_end'])} ({hours:g} h)",
        "",
        _table(("reach", "parameter", "added", "unit", "basis", "responsible", "travel h", "steps", "affected"), rows),
        "",
        "added: downstream minus upstream one travel time earlier, window mean; basis load = concentration x flow (kg/d),",
        "concentration = increment without flow data (dilution by tributaries ignored). A border reach is the upstream region's.",
        f"model {first['provenance']['model_version']}",
    ])


def render_factors(records: list[Apportionment]) -> str:
    """A region's source_factor records of one hour: per factor its contribution to each species, the
    model's profiles and fit, and the stations."""
    first = records[0]
    model = first["provenance"]["factor_model"]
    by = {r["pollutant"]: r for r in records}
    species = [s for s in model["species"] if s in by]
    factors = list(model["profiles"])
    contribution = [(k, *(f"{by[s]['amounts'][k]:.3g} ({by[s]['shares'][k]:.0%})" for s in species)) for k in factors]
    contribution.append(("rmse", *(f"{by[s]['fit']['rmse']:.3g}" for s in species)))
    profiles = [(k, *(f"{model['profiles'][k][s]:.2f}" for s in model["species"])) for k in factors]
    return "\n".join([
        f"{first['region']} source factors: hour {_iso(first['window_start'])} .. {_iso(first['window_end'])}",
        "",
        "contributions (mean over the stations that measured each species; share of the modelled total):",
        _table(("factor", *(f"{s} {by[s]['unit']}" for s in species)), contribution),
        "",
        f"profiles: part of each species over the refit window {_iso(model['refit_window_start'])} .. {_iso(model['refit_window_end'])}:",
        _table(("factor", *model["species"]), profiles),
        "",
        f"fit: {model['n_factors']} factors on {model['n_rows']} station hours, Q/Qexp {model['q_ratio']:.2f}, "
        f"{model['frac_scaled_over_3']:.1%} of scaled residuals beyond 3, {'converged' if model['converged'] else 'NOT converged'}; "
        f"refit every {model['refit_every_h']} h",
        "stations: " + ", ".join(u["station_id"] for u in first["provenance"]["stations"]),
        f"model {first['provenance']['model_version']}, seed {first['provenance']['seed']}",
    ])


@apportion.command("show")
@click.argument("region")
@click.option("--kind", type=click.Choice(KINDS), default="transport", show_default=True,
              help="transport: where REGION's air came from (shares per origin region and local, per pollutant); "
                   "water_reach: what each river reach starting in REGION added, per water parameter; "
                   "source_factor: REGION's latest hour split over its source-type (PMF) factors, per species.")
@click.option("--pollutant", default=None,
              help="transport: the pollutant to show (pm25 if not given; pm10, so2, no2, co). "
                   "water_reach / source_factor: only this parameter or species (all if not given).")
@stack_options
@namespace_option
def show(region: str, kind: str, pollutant: str | None, config_file, state_dir, port_base, namespace) -> None:
    """Print REGION's latest apportionment of one kind as a table, with the stations, lags, wind sectors,
    model version and window (or refit window) behind it."""
    s = make_settings(config_file, state_dir, port_base, namespace=namespace)
    if kind == "transport":
        pollutant = pollutant or "pm25"
    records = latest_window(s, region, kind, pollutant)
    if not records:
        what = f"{pollutant} {kind}" if pollutant else kind
        raise click.ClickException(f"no {what} apportionment for region {region!r} on {namespaced(APPORTIONMENT, s.namespace)} yet")
    if kind == "transport":
        click.echo(render(records[0]))
    elif kind == "water_reach":
        click.echo(render_reaches(records))
    else:
        click.echo(render_factors(records))


@click.command("apportion-stage")
@stack_options
@namespace_option
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
def apportion_stage(config_file, state_dir, port_base, namespace, metrics_port) -> None:
    """Run the apportionment stage until Ctrl-C: station hours -> per-region source shares on jw.apportionment (event time)."""
    from apportion.stage import ApportionStage

    run_stage(make_settings(config_file, state_dir, port_base, namespace=namespace), ApportionStage, metrics_port)


def register_apportion(main: click.Group) -> None:
    """Add `apportion` and `apportion-stage` to the `jointwatch` group."""
    main.add_command(apportion)
    main.add_command(apportion_stage)
