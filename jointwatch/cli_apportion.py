"""`jointwatch apportion …` and `jointwatch apportion-stage`: run the apportionment stage, and print a
region's latest apportionment (where its pollution came from) as a table."""

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


def latest_apportionment(settings: Settings, region: str, pollutant: str) -> Apportionment | None:
    """The region's region-scope record with the latest window for the pollutant.

    The topic is a log keyed by region (the stage emits windows in order), so the newest
    records are at each partition's end: read back from there in growing chunks, and stop
    at the first chunk holding the region's pollutant. No consumer group offsets are used.
    """
    topic = namespaced(APPORTIONMENT, settings.namespace)
    consumer = Consumer(consumer_config(settings.kafka_bootstrap, f"jw-apportion-show-{uuid.uuid4().hex[:8]}"))
    best: Apportionment | None = None
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            raise click.ClickException(f"topic {topic} does not exist (is the apportionment stage running?)")
        for partition in sorted(meta.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            end, chunk = high, TAIL_FIRST
            while end > low:
                begin = max(low, end - chunk)
                found = [r for r in _read_range(consumer, topic, partition, begin, end)
                         if isinstance(r, dict) and r.get("region") == region and r.get("scope") == "region" and r.get("pollutant") == pollutant]
                if found:
                    top = max(found, key=lambda r: r["window_end"])
                    best = top if best is None or top["window_end"] > best["window_end"] else best
                    break
                end, chunk = begin, chunk * 4
    finally:
        consumer.close()
    return best


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def render(rec: Apportionment) -> str:
    """The record as the table `apportion show` prints."""
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


@apportion.command("show")
@click.argument("region")
@click.option("--pollutant", default="pm25", show_default=True, help="Pollutant whose apportionment to show (pm25, pm10, so2, no2, co).")
@stack_options
@namespace_option
def show(region: str, pollutant: str, config_file, state_dir, port_base, namespace) -> None:
    """Print REGION's latest apportionment as a table: shares per origin region and local with their
    uncertainty, fit, origin and affected regions, stations / lags / wind sectors used, model and window."""
    s = make_settings(config_file, state_dir, port_base, namespace=namespace)
    rec = latest_apportionment(s, region, pollutant)
    if rec is None:
        raise click.ClickException(f"no {pollutant} apportionment for region {region!r} on {namespaced(APPORTIONMENT, s.namespace)} yet")
    click.echo(render(rec))


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
