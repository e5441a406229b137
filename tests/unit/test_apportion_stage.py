"""The apportionment stage's pure part (apportion.stage.Apportioner): hours picked from rolling
records, the event-time trigger, determinism under any partition interleaving, and a restart
from its checkpoint giving the same records as one pass. The demo's own episode (a plume from
`north` carried into `central`) is the input, so the records also have a known truth."""

from __future__ import annotations

import json
import math
import random
import zlib
from functools import cache
from typing import Any

import numpy as np
import pytest

from apportion.stage import HOUR_MS, Apportioner, Checkpoint, StageConfig, hourly_sample
from apportion.synthetic import demo_episode
from apportion.transport import AirSeries
from connectors.kafka_io import encode_json
from jointwatch.cli_apportion import render
from schemas.models import validation_errors
from simulator.scenario import DEFAULT_START_MS
from tests.samples import NETWORK

HOURS = 16  # plume from sim minute 40 for 3 h; it has left central by hour ~12
PROGRESS_MINUTES = (10, 20, 30, 40, 50)  # rolling hours ending off the hour: progress only
PARTITIONS = 2
Feed = dict[int, list[dict[str, Any]]]  # partition -> its records in Kafka order (offset = index)


def station_hour(station_id: str, end: int, pm25: float | None, wind_speed: float, wind_dir: float, minutes: int = 60) -> dict[str, Any]:
    s = NETWORK.stations[station_id]
    rad = math.radians(wind_dir)
    doc = {
        "schema": "jw.station_hour.v2", "station_id": station_id, "region": s.region, "medium": s.medium,
        "window_start": end - HOUR_MS, "window_end": end,
        "wind_speed_mean": round(wind_speed, 4), "wind_speed_minutes": 60,
        "wind_dir_sin_mean": round(math.sin(rad), 6), "wind_dir_cos_mean": round(math.cos(rad), 6), "wind_dir_minutes": 60,
        "pm25_mean": None if pm25 is None else round(pm25, 4), "pm25_minutes": minutes if pm25 is not None else 0,
    }
    assert validation_errors("station_hour", doc) == [], validation_errors("station_hour", doc)
    return doc


def partition_of(station_id: str) -> int:
    return zlib.crc32(station_id.encode()) % PARTITIONS


def feed_from(series: AirSeries, start_ms: int) -> Feed:
    """Each station's hourly means as the job's rolling records: the whole-hour one, then a few
    ending later in the next hour (same values: the stage must ignore them but for progress)."""
    feed: Feed = {p: [] for p in range(PARTITIONS)}
    for k in range(series.conc.shape[1]):
        end = start_ms + (k + 1) * HOUR_MS
        for minute in (0, *PROGRESS_MINUTES):
            for i, s in enumerate(series.stations):
                doc = station_hour(s.id, end + minute * 60_000, float(series.conc[i, k]), float(series.wind_speed[i, k]), float(series.wind_dir[i, k]))
                feed[partition_of(s.id)].append(doc)
    return feed


@cache
def demo_feed() -> tuple[AirSeries, np.ndarray, Feed]:
    series, plume = demo_episode(NETWORK, minutes=HOURS * 60, agg_min=60)
    return series, plume, feed_from(series, DEFAULT_START_MS)


def run(app: Apportioner, feed: Feed, order: list[int], starts: dict[int, int] | None = None, every: int = 1) -> list[bytes]:
    """Offer the feed's records in the given partition order (each partition in its own order),
    advancing after every `every` records; the published records as bytes."""
    starts = starts or dict.fromkeys(feed, 0)
    app.assign(starts, [p for p in feed if len(feed[p]) > starts[p]])
    cursor = dict(starts)
    out: list[bytes] = []
    for n, p in enumerate(order, 1):
        app.offer(p, cursor[p], feed[p][cursor[p]])  # type: ignore[arg-type]
        cursor[p] += 1
        if n % every == 0:
            out += [encode_json(r) for r in app.advance()]
    return out + [encode_json(r) for r in app.advance()]


def interleaving(feed: Feed, seed: int, starts: dict[int, int] | None = None) -> list[int]:
    starts = starts or dict.fromkeys(feed, 0)
    order = [p for p in feed for _ in range(len(feed[p]) - starts[p])]
    random.Random(seed).shuffle(order)
    return order


def test_only_whole_clock_hours_are_samples() -> None:
    end = DEFAULT_START_MS + 5 * HOUR_MS
    sample = hourly_sample(station_hour("n-a01", end, 42.0, 3.0, 90.0), ("pm25", "pm10"), 45)  # type: ignore[arg-type]
    assert sample is not None and sample.hour_end == end and sample.values["pm25"] == 42.0
    assert math.isnan(sample.values["pm10"])  # not measured in the hour
    assert sample.wind_dir == pytest.approx(90.0) and sample.wind_speed == 3.0
    assert hourly_sample(station_hour("n-a01", end + 60_000, 42.0, 3.0, 90.0), ("pm25",), 45) is None  # type: ignore[arg-type]
    assert hourly_sample(station_hour("n-w01", end, None, 0.0, 0.0), ("pm25",), 45) is None  # type: ignore[arg-type]  # water
    short = hourly_sample(station_hour("n-a01", end, 42.0, 3.0, 90.0, minutes=30), ("pm25",), 45)  # type: ignore[arg-type]
    assert short is not None and math.isnan(short.values["pm25"])  # 30 minutes is no valid hourly mean
    calm = station_hour("n-a01", end, 42.0, 0.2, 0.0) | {"wind_dir_sin_mean": 0.01, "wind_dir_cos_mean": -0.02}
    assert math.isnan(hourly_sample(calm, ("pm25",), 45).wind_dir)  # type: ignore[arg-type, union-attr]  # wind turned: no direction


def test_history_is_the_solvers_look_back() -> None:
    assert StageConfig().history_h == 168  # the local level's week (transport.local_prior_h)
    assert StageConfig(window_h=200).history_h == 212  # window plus the longest lag


def test_a_window_waits_for_every_partition_to_pass_its_end_plus_slack() -> None:
    series, _, _ = demo_feed()
    h = DEFAULT_START_MS + 4 * HOUR_MS  # the first window with >= 3 valid hours ends here
    ids = [s.id for s in series.stations]
    p0 = next(s for s in ids if partition_of(s) == 0)
    p1 = next(s for s in ids if partition_of(s) == 1)
    app = Apportioner(NETWORK, StageConfig(pollutants=("pm25",)))
    app.assign({0: 0, 1: 0}, [0, 1])
    offsets = {0: 0, 1: 0}

    def offer(station: str, end: int) -> list[Any]:
        p = partition_of(station)
        k = (end - DEFAULT_START_MS - 1) // HOUR_MS  # the hour the record's values belong to
        i = ids.index(station)
        app.offer(p, offsets[p], station_hour(station, end, float(series.conc[i, k]), float(series.wind_speed[i, k]), float(series.wind_dir[i, k])))  # type: ignore[arg-type]
        offsets[p] += 1
        return app.advance()

    for k in range(1, 5):
        for s in ids:
            offer(s, DEFAULT_START_MS + k * HOUR_MS)
    assert offer(p0, h + 30 * 60_000) == []  # partition 1 has not passed h + slack: nothing
    assert app.watermark() == h - 5 * 60_000
    assert offer(p1, h + 4 * 60_000) == []  # 4 min past h, slack is 5
    assert app.emitted_through == h - HOUR_MS  # the hours before h were solved as they passed
    out = offer(p1, h + 5 * 60_000)
    assert [r["window_end"] for r in out] == [h] * 3 and sorted(r["region"] for r in out) == ["central", "north", "south"]
    assert app.emitted_through == h
    assert app.offer(partition_of(p0), offsets[partition_of(p0)], station_hour(p0, h, 30.0, 3.0, 0.0)) == "late"  # type: ignore[arg-type]


def test_records_name_the_true_origin_and_validate() -> None:
    series, plume, feed = demo_feed()
    app = Apportioner(NETWORK, StageConfig(pollutants=("pm25",)))
    records = [json.loads(b) for b in run(app, feed, interleaving(feed, 0), every=len(feed[0]) + len(feed[1]))]
    assert records and all(validation_errors("apportionment", r) == [] for r in records)
    central = [j for j, s in enumerate(series.stations) if s.region == "central"]
    by = {(r["region"], (r["window_end"] - DEFAULT_START_MS) // HOUR_MS): r for r in records}
    episode = 0
    for h in range(3, HOURS + 1):
        t0 = max(0, h - 6)
        true = plume[central, t0:h].sum() / series.conc[central, t0:h].sum()
        rec = by[("central", h)]
        if true < 0.2:  # an episode window as the validation report defines it
            continue
        episode += 1
        assert rec["origin_region"] == "north" and rec["affected_regions"] == ["central"], (h, rec["shares"])
        if h >= 6:  # a full 6-h window (the first ones hold only the hours since the stream began)
            assert abs(rec["shares"]["north"] - true) <= 0.10, (h, rec["shares"], true)
        assert rec["record_id"] == f"transport:central:pm25:{rec['window_start']}" and rec["provenance"]["seed"] == rec["window_end"] // HOUR_MS
    assert episode >= 6
    for h in range(13, HOURS + 1):  # clean: the plume has left
        assert by[("central", h)]["origin_region"] is None
    assert all(r["origin_region"] is None for r in records if r["region"] != "central")  # north's plume is local; south never sees it


def test_any_interleaving_of_partitions_gives_identical_records() -> None:
    _, _, feed = demo_feed()
    config = StageConfig(pollutants=("pm25",))
    reference = run(Apportioner(NETWORK, config), feed, [p for p in feed for _ in feed[p]], every=10**9)  # partition 0, then 1
    assert len(reference) >= 3 * 12
    for seed, every in ((1, 1), (2, 7), (3, 500)):
        assert run(Apportioner(NETWORK, config), feed, interleaving(feed, seed), every=every) == reference


def test_restart_from_checkpoint_gives_the_records_of_one_pass() -> None:
    _, _, feed = demo_feed()
    config = StageConfig(pollutants=("pm25",))
    order = interleaving(feed, 4)
    one_pass = run(Apportioner(NETWORK, config), feed, order)

    first = Apportioner(NETWORK, config)
    cut = len(order) * 3 // 5
    before = run(first, feed, order[:cut])
    assert before and first.emitted_through is not None
    cp = first.checkpoint()
    # what the stage commits: a record's metadata round trip
    restarted = Apportioner(NETWORK, config, emitted_through=Checkpoint.emitted_through_of(cp.metadata()))
    after = run(restarted, feed, interleaving(feed, 5, cp.offsets), starts=cp.offsets)
    assert after and before + after == one_pass


def test_unknown_station_is_refused_and_water_is_progress_only() -> None:
    app = Apportioner(NETWORK)
    with pytest.raises(ValueError, match="unknown air station"):
        app.offer(0, 0, station_hour("n-a01", DEFAULT_START_MS, 1.0, 1.0, 1.0) | {"station_id": "x-a99"})  # type: ignore[arg-type]
    assert app.offer(0, 1, station_hour("n-w01", DEFAULT_START_MS, None, 0.0, 0.0)) == "progress"  # type: ignore[arg-type]
    assert app.partition_max == {0: DEFAULT_START_MS} and app.checkpoint().offsets == {0: 2}


def test_show_renders_shares_intervals_origin_and_stations() -> None:
    _, _, feed = demo_feed()
    records = [json.loads(b) for b in run(Apportioner(NETWORK, StageConfig(pollutants=("pm25",))), feed, interleaving(feed, 0), every=10**9)]
    rec = next(r for r in records if r["region"] == "central" and r["window_end"] == DEFAULT_START_MS + 8 * HOUR_MS)
    text = render(rec)
    assert text.startswith("central pm25: window 2026-")
    assert "origin: north  -> affected: central" in text
    north = next(line for line in text.splitlines() if line.startswith("north "))
    assert f"{rec['shares']['north']:.3f}" in north and f"{rec['uncertainty']['north']['lo']:.3f} .. {rec['uncertainty']['north']['hi']:.3f}" in north
    assert next(i for i, line in enumerate(text.splitlines()) if line.startswith("local ")) > text.splitlines().index(north)  # local last
    for used in rec["provenance"]["stations"]:  # one row per upwind station, with every sector it was used from
        assert any(line.startswith(used["station_id"]) and used["wind_sector"] in line.split()[-1].split("/") for line in text.splitlines())
    assert "model transport-nnls/1" in text and f"fit: r2 {rec['fit']['r2']:.3f}" in text
