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

from apportion import pmf
from apportion.records import water_records
from apportion.stage import HOUR_MS, REACH_PARAMETERS, Apportioner, Checkpoint, StageConfig, UnknownStation, hourly_sample
from apportion.synthetic import demo_episode
from apportion.transport import MODEL_VERSION, AirSeries
from apportion.water import attribute_reaches, river_sections
from connectors.kafka_io import encode_json
from jobs.validity import AQI_POLLUTANTS, WATER_PARAMETERS
from jointwatch.cli_apportion import render, render_factors, render_reaches
from schemas.models import validation_errors
from schemas.network import Station
from simulator.scenario import DEFAULT_START_MS, P, ScenarioConfig, simulate
from tests.samples import NETWORK

HOURS = 16  # plume from sim minute 40 for 3 h; it has left central by hour ~12
PROGRESS_MINUTES = (10, 20, 30, 40, 50)  # rolling hours ending off the hour: progress only
PARTITIONS = 2
FULL_HOURS = 24  # the simulator's day: its plume and river spill, every station and parameter
# Small factor windows so a day holds refits: the 6 h refit has 60 rows (too few), 12 h on have 120.
# No transport (the tests above cover it, and it is 95 % of a pass's time): rivers and factors only.
FACTOR_CONFIG = StageConfig(pollutants=(), factors=2, factor_window_h=12, refit_h=6, factor_min_rows=100, factor_restarts=1)
Feed = dict[int, list[dict[str, Any]]]  # partition -> its records in Kafka order (offset = index)


def hour_doc(station_id: str, end: int, means: dict[str, float | None], wind: tuple[float, float, float] | None = None,
             minutes: int = 60) -> dict[str, Any]:
    """A station's rolling hour ending at `end`: the given means and, for air, wind (speed, mean sin, mean cos)."""
    s = NETWORK.stations[station_id]
    doc: dict[str, Any] = {
        "schema": "jw.station_hour.v2", "station_id": station_id, "region": s.region, "medium": s.medium,
        "window_start": end - HOUR_MS, "window_end": end,
        "wind_speed_mean": None, "wind_speed_minutes": 0, "wind_dir_sin_mean": None, "wind_dir_cos_mean": None, "wind_dir_minutes": 0,
    }
    if wind is not None:
        doc |= {"wind_speed_mean": round(wind[0], 4), "wind_speed_minutes": 60, "wind_dir_sin_mean": round(wind[1], 6),
                "wind_dir_cos_mean": round(wind[2], 6), "wind_dir_minutes": 60}
    for p, mean in means.items():
        doc[f"{p}_mean"], doc[f"{p}_minutes"] = (None, 0) if mean is None else (round(mean, 4), minutes)
    assert validation_errors("station_hour", doc) == [], validation_errors("station_hour", doc)
    return doc


def station_hour(station_id: str, end: int, pm25: float | None, wind_speed: float, wind_dir: float, minutes: int = 60) -> dict[str, Any]:
    rad = math.radians(wind_dir)
    return hour_doc(station_id, end, {"pm25": pm25}, (wind_speed, math.sin(rad), math.cos(rad)), minutes)


def partition_of(station_id: str) -> int:
    return zlib.crc32(station_id.encode()) % PARTITIONS


def as_feed(hours: list[list[dict[str, Any]]]) -> Feed:
    """Per hour its whole-hour records as the job's rolling records: the whole-hour one, then copies
    ending later in the next hour (same values: the stage must ignore them but for progress)."""
    feed: Feed = {p: [] for p in range(PARTITIONS)}
    for docs in hours:
        for minute in (0, *PROGRESS_MINUTES):
            for doc in docs:
                shift = minute * 60_000
                feed[partition_of(doc["station_id"])].append({**doc, "window_start": doc["window_start"] + shift, "window_end": doc["window_end"] + shift})
    return feed


def feed_from(series: AirSeries, start_ms: int) -> Feed:
    """Each station's hourly PM2.5 means and wind as the job's rolling records."""
    return as_feed([[station_hour(s.id, start_ms + (k + 1) * HOUR_MS, float(series.conc[i, k]), float(series.wind_speed[i, k]), float(series.wind_dir[i, k]))
                     for i, s in enumerate(series.stations)] for k in range(series.conc.shape[1])])


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
    assert sample.values["wind_dir"] == pytest.approx(90.0) and sample.values["wind_speed"] == 3.0
    assert hourly_sample(station_hour("n-a01", end + 60_000, 42.0, 3.0, 90.0), ("pm25",), 45) is None  # type: ignore[arg-type]
    short = hourly_sample(station_hour("n-a01", end, 42.0, 3.0, 90.0, minutes=30), ("pm25",), 45)  # type: ignore[arg-type]
    assert short is not None and math.isnan(short.values["pm25"])  # 30 minutes is no valid hourly mean
    calm = station_hour("n-a01", end, 42.0, 0.2, 0.0) | {"wind_dir_sin_mean": 0.01, "wind_dir_cos_mean": -0.02}
    assert math.isnan(hourly_sample(calm, ("pm25",), 45).values["wind_dir"])  # type: ignore[arg-type, union-attr]  # wind turned: no direction
    water = hourly_sample(hour_doc("n-w01", end, {"nh3n": 0.42, "tp": 0.1, "flow": 20.0}), ("nh3n", "tp", "codmn", "flow"), 45)  # type: ignore[arg-type]
    assert water is not None and water.values["nh3n"] == 0.42 and water.values["flow"] == 20.0
    assert math.isnan(water.values["codmn"]) and math.isnan(water.values["wind_speed"])  # not in the record; a section has no wind


def test_history_is_the_solvers_look_back() -> None:
    assert StageConfig().history_h == 168  # the local level's week (transport.local_prior_h); the factor window fits in it
    assert StageConfig().factor_h == 144 + 24 - 1  # a refit up to 23 h ago, on the 144 h before it
    assert StageConfig(window_h=200).history_h == 212  # window plus the longest lag
    assert StageConfig(factor_window_h=720).history_h == 743  # 30 days of factor rows: kept and re-read at restart
    # the river: 6-h window plus the longest reach's travel (c-w02 -> s-w01, 62 km at 3 km/h = 20.7 h)
    assert Apportioner(NETWORK).water_h == 6 + 21
    assert Apportioner(NETWORK, StageConfig(river_velocity_kmh=0.25)).history_h == 6 + 248  # a slow river outlasts the week
    with pytest.raises(ValueError, match="detection limit"):
        StageConfig(factor_species=("pm25", "benzene"))
    with pytest.raises(ValueError, match="factor_min_rows > 6"):  # 3 factors of 6 species: Qexp = 6 n - 3 (n + 6) > 0
        StageConfig(factor_min_rows=6)
    assert StageConfig(factor_min_rows=7).factors == 3
    with pytest.raises(ValueError, match="1 <= factors < species"):
        StageConfig(factors=6)


def test_a_window_waits_for_every_partition_to_pass_its_end_plus_slack() -> None:
    series, _, _ = demo_feed()
    h = DEFAULT_START_MS + 4 * HOUR_MS  # the first window with >= 3 valid hours ends here
    ids = [s.id for s in series.stations]
    p0 = next(s for s in ids if partition_of(s) == 0)
    p1 = next(s for s in ids if partition_of(s) == 1)
    app = Apportioner(NETWORK, StageConfig(pollutants=("pm25",)))
    app.assign({0: 0, 1: 0}, [0, 1])
    offsets = {0: 0, 1: 0}
    assert app.advance() == [] and app.emitted_through is None  # no data: no progress to report

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
            if k == 1 and s == p0:  # one partition heard from: no watermark yet
                assert app.emitted_through is None
            if k == 1 and s == p1:  # both: no window ends before the first data's hour, said at once (a progress marker)
                assert app.emitted_through == DEFAULT_START_MS
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


def test_unknown_station_is_refused_and_off_hour_records_are_progress() -> None:
    app = Apportioner(NETWORK)
    with pytest.raises(UnknownStation, match="unknown air station"):
        app.offer(0, 0, station_hour("n-a01", DEFAULT_START_MS, 1.0, 1.0, 1.0) | {"station_id": "x-a99"})  # type: ignore[arg-type]
    with pytest.raises(UnknownStation, match="unknown water station"):
        app.offer(0, 0, hour_doc("n-w01", DEFAULT_START_MS, {"nh3n": 0.4}) | {"station_id": "x-w99"})  # type: ignore[arg-type]
    assert app.offer(0, 1, hour_doc("n-w01", DEFAULT_START_MS + 60_000, {"nh3n": 0.4})) == "progress"  # type: ignore[arg-type]
    assert app.offer(0, 2, hour_doc("n-w01", DEFAULT_START_MS, {"nh3n": 0.4})) == "hour"  # type: ignore[arg-type]
    assert app.partition_max == {0: DEFAULT_START_MS + 60_000} and app.checkpoint().offsets == {0: 2}  # the water hour is still needed


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
    assert f"model {MODEL_VERSION}" in text and f"fit: r2 {rec['fit']['r2']:.3f}" in text


@cache
def full_feed(hours: int = FULL_HOURS) -> Feed:
    """`hours` of the simulator's scenario for every station as rolling records: hourly means of the
    AQI pollutants and the wind (air stations) or of the water parameters (river sections)."""
    block = simulate(NETWORK, ScenarioConfig(), 0, hours * 60)
    minutes = block.measured.reshape(len(block.station_ids), hours, 60, -1)
    means = minutes.mean(axis=2)
    rad = np.radians(minutes[:, :, :, P["wind_dir"]])
    sin, cos = np.sin(rad).mean(axis=2), np.cos(rad).mean(axis=2)
    docs_by_hour = []
    for k in range(hours):
        docs = []
        for i, sid in enumerate(block.station_ids):
            air = NETWORK.stations[sid].medium == "air"
            wind = (float(means[i, k, P["wind_speed"]]), float(sin[i, k]), float(cos[i, k])) if air else None
            # None where the station does not measure it (the co-located PM pod): the job's null mean, no minutes
            values = {p: float(means[i, k, P[p]]) if p in NETWORK.stations[sid].parameters else None
                      for p in (AQI_POLLUTANTS if air else WATER_PARAMETERS)}
            docs.append(hour_doc(sid, DEFAULT_START_MS + (k + 1) * HOUR_MS, values, wind))
        docs_by_hour.append(docs)
    return as_feed(docs_by_hour)


@cache
def full_pass() -> tuple[bytes, ...]:
    feed = full_feed()
    return tuple(run(Apportioner(NETWORK, FACTOR_CONFIG), feed, [p for p in feed for _ in feed[p]], every=10**9))


def means_of(feed: Feed, stations: tuple[Station, ...], parameter: str, ends: list[int]) -> np.ndarray:
    """(station, hour) array of the parameter in the feed's whole-hour records (NaN where none)."""
    out = np.full((len(stations), len(ends)), np.nan)
    row, col = {s.id: i for i, s in enumerate(stations)}, {e: j for j, e in enumerate(ends)}
    for doc in (d for docs in feed.values() for d in docs):
        if doc["station_id"] in row and doc["window_end"] in col and doc.get(f"{parameter}_mean") is not None:
            out[row[doc["station_id"]], col[doc["window_end"]]] = doc[f"{parameter}_mean"]
    return out


def test_reach_records_are_apportion_water_on_the_same_hours() -> None:
    """Every hour's reach records equal apportion.water on the feed's own hourly means: the window of
    window_h hours ending at the hour, and the look-back its longest reach's travel time needs."""
    feed, records = full_feed(), [json.loads(b) for b in full_pass()]
    water = [r for r in records if r["kind"] == "water_reach"]
    assert water and all(validation_errors("apportionment", r) == [] for r in water)
    sections, look_back = river_sections(NETWORK), Apportioner(NETWORK).water_h
    for h in range(1, FULL_HOURS + 1):
        end = DEFAULT_START_MS + h * HOUR_MS
        ends = list(range(end - (look_back - 1) * HOUR_MS, end + HOUR_MS, HOUR_MS))
        expected = []
        for p in REACH_PARAMETERS:
            result = attribute_reaches(sections, means_of(feed, sections, p, ends), look_back - 6, look_back, 1.0, 3.0, p, "mg/L")
            expected += water_records(result, NETWORK, ends[0] - HOUR_MS, HOUR_MS)
        assert [r for r in water if r["window_end"] == end] == json.loads(encode_json(expected)), h
    assert len(water) == FULL_HOURS * len(REACH_PARAMETERS) * (len(sections) - 1)


def river_feed(flow: float | None, hours: int = 30) -> Feed:
    """Sections only: a ramp entering the river that reaches each section km / 3 h later, and every reach
    adding 0.1 mg/L of NH3-N (with a constant discharge, if given)."""
    sections = river_sections(NETWORK)
    def means(n: int, km: float, k: int) -> dict[str, float | None]:
        return {"nh3n": 5.0 + 0.05 * (k - km / 3.0) + 0.1 * n} | ({"flow": flow} if flow else {})

    return as_feed([[hour_doc(s.id, DEFAULT_START_MS + k * HOUR_MS, means(n, s.river_km or 0.0, k)) for n, s in enumerate(sections)]
                    for k in range(1, hours + 1)])


@pytest.mark.parametrize(("flow", "basis", "unit", "added"), [(None, "concentration", "mg/L", 0.1), (10.0, "load", "kg/d", 0.1 * 10.0 * 86.4)])
def test_reach_additions_are_loads_with_flow_and_increments_without(flow: float | None, basis: str, unit: str, added: float) -> None:
    feed = river_feed(flow)
    records = [json.loads(b) for b in run(Apportioner(NETWORK, StageConfig(pollutants=())), feed, interleaving(feed, 3), every=11)]
    assert {r["kind"] for r in records} == {"water_reach"} and {r["pollutant"] for r in records} == {"nh3n"}  # the parameter with data
    last = {r["receptor"]: r for r in records if r["window_end"] == DEFAULT_START_MS + 30 * HOUR_MS}
    assert sorted(last) == ["c-w01>c-w02", "c-w02>s-w01", "n-w01>n-w02", "n-w02>c-w01", "s-w01>s-w02"]
    for reach, rec in last.items():
        up = NETWORK.stations[reach.split(">")[0]].region
        assert rec["basis"] == basis and rec["unit"] == unit and rec["fit"]["n_steps"] == 6  # the 62 km reach's 21 h lag is in the look-back
        assert rec["amounts"] == {up: pytest.approx(added, rel=2e-3)} and rec["origin_region"] == up
    assert last["c-w02>s-w01"]["affected_regions"] == ["south"] and last["c-w01>c-w02"]["affected_regions"] == []


def test_checkpoint_covers_the_river_history_and_a_restart_repeats_it() -> None:
    """Partitions holding only river sections: the checkpoint keeps their hours (not the read position),
    so a restart re-reads the upstream hours a reach's lag needs and emits what one pass does."""
    feed = river_feed(None)
    config = StageConfig(pollutants=())
    order = interleaving(feed, 6)
    one_pass = run(Apportioner(NETWORK, config), feed, order)
    first = Apportioner(NETWORK, config)
    cut = len(order) * 4 // 5
    before = run(first, feed, order[:cut])
    cp = first.checkpoint()
    assert cp.offsets == {0: 0, 1: 0} and first.positions[0] > 0 and first.positions[1] > 0  # 24 h of river: all still needed
    restarted = Apportioner(NETWORK, config, emitted_through=cp.emitted_through)
    after = run(restarted, feed, interleaving(feed, 7, cp.offsets), starts=cp.offsets)
    assert after and before + after == one_pass


def test_source_factor_records_explain_their_model() -> None:
    records = [json.loads(b) for b in full_pass()]
    assert all(validation_errors("apportionment", r) == [] for r in records)
    factors = [r for r in records if r["kind"] == "source_factor"]
    # the refit at 6 h had 60 complete station hours (< 100): none before the 12 h refit, then every hour
    assert min(r["window_end"] for r in factors) == DEFAULT_START_MS + 12 * HOUR_MS
    assert len(factors) == (FULL_HOURS - 11) * 3 * len(AQI_POLLUTANTS)
    for r in factors:
        model = r["provenance"]["factor_model"]
        refit_end = r["window_end"] - r["window_end"] % (6 * HOUR_MS)
        assert (model["refit_window_start"], model["refit_window_end"], model["refit_every_h"]) == (refit_end - 12 * HOUR_MS, refit_end, 6)
        assert r["provenance"]["seed"] == refit_end // HOUR_MS and r["provenance"]["model_version"] == pmf.MODEL_VERSION
        assert model["n_rows"] == 12 * 10 and model["n_factors"] == 2 and model["species"] == list(AQI_POLLUTANTS)
        assert model["q_ratio"] == pytest.approx(model["q"] / model["q_exp"], rel=1e-5)
        assert r["window_end"] - r["window_start"] == HOUR_MS and r["record_id"] == f"source_factor:{r['region']}:{r['pollutant']}:{r['window_start']}"
        assert sorted(r["shares"]) == sorted(model["profiles"]) and all(k.startswith("f_") for k in r["shares"])
        assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-5) and min(r["amounts"].values()) >= 0
        for species in AQI_POLLUTANTS:  # percent of species: each species' parts add up over the factors
            assert sum(p[species] for p in model["profiles"].values()) == pytest.approx(1.0, abs=1e-5)
        # stations with at least half the species (the stage projects only those rows: not the PM-only pod c-a11)
        own = [s.id for s in NETWORK.stations.values() if s.region == r["region"] and s.medium == "air"
               and 2 * len(set(s.parameters) & set(AQI_POLLUTANTS)) >= len(AQI_POLLUTANTS)]
        assert [u["station_id"] for u in r["provenance"]["stations"]] == own
        assert r["fit"]["n_steps"] == 10 and r["unit"] == ("mg/m3" if r["pollutant"] == "co" else "ug/m3")
    # the factors rebuild what was measured: each region's modelled PM2.5 is near its mean
    feed = full_feed()
    for r in (r for r in factors if r["pollutant"] == "pm25"):
        stations = tuple(s for s in NETWORK.stations.values() if s.region == r["region"] and s.medium == "air")
        measured = float(np.mean(means_of(feed, stations, "pm25", [r["window_end"]])))
        assert sum(r["amounts"].values()) == pytest.approx(measured, rel=0.15), (r["region"], r["window_end"])


def test_factor_and_reach_records_are_the_same_for_any_interleaving_and_after_a_restart() -> None:
    feed, reference = full_feed(), list(full_pass())
    assert {json.loads(b)["kind"] for b in reference} == {"water_reach", "source_factor"}
    assert run(Apportioner(NETWORK, FACTOR_CONFIG), feed, interleaving(feed, 1), every=7) == reference

    order = interleaving(feed, 2)
    first = Apportioner(NETWORK, FACTOR_CONFIG)
    before = run(first, feed, order[: len(order) * 2 // 3])
    cp = first.checkpoint()
    restarted = Apportioner(NETWORK, FACTOR_CONFIG, emitted_through=Checkpoint.emitted_through_of(cp.metadata()))
    after = run(restarted, feed, interleaving(feed, 8, cp.offsets), starts=cp.offsets)
    assert before + after == reference
    # the restart refitted the model in use from the hours it re-read (it was fitted before the cut)
    first_after = json.loads(after[0])["window_end"]
    assert any(r["kind"] == "source_factor" and r["provenance"]["factor_model"]["refit_window_end"] < first_after for r in map(json.loads, after))


def test_show_renders_reaches_and_factors() -> None:
    records = [json.loads(b) for b in full_pass()]
    last = DEFAULT_START_MS + FULL_HOURS * HOUR_MS
    reaches = [r for r in records if r["kind"] == "water_reach" and r["region"] == "central" and r["window_end"] == last]
    text = render_reaches(reaches).splitlines()
    assert text[0].startswith("central river reaches") and "(6 h)" in text[0]
    for r in reaches:  # one row per reach and parameter: its addition, who answers for it, its lag and steps
        row = next(line.split() for line in text if line.startswith(f"{r['receptor']} ") and f" {r['pollutant']} " in line)
        assert row[2] == f"{sum(r['amounts'].values()):.3f}" and row[5:7] == ["central", "100%"]
        assert float(row[7]) == pytest.approx(r["provenance"]["stations"][0]["lag_h"]) and row[8] == str(r["fit"]["n_steps"])
    factors = [r for r in records if r["kind"] == "source_factor" and r["region"] == "north" and r["window_end"] == last]
    text = render_factors(factors).splitlines()
    model = factors[0]["provenance"]["factor_model"]
    assert text[0] == "north source factors: hour 2026-11-22T23:00Z .. 2026-11-23T00:00Z"
    pm25 = next(r for r in factors if r["pollutant"] == "pm25")
    for k in model["profiles"]:  # the contribution row (amount and share per species), then the profile row
        rows = [line.split() for line in text if line.startswith(f"{k} ")]
        assert rows[0][1:3] == [f"{pm25['amounts'][k]:.3g}", f"({pm25['shares'][k]:.0%})"]
        assert rows[1][1:] == [f"{model['profiles'][k][s]:.2f}" for s in model["species"]]
    assert f"Q/Qexp {model['q_ratio']:.2f}" in "\n".join(text) and text[-1] == f"model {pmf.MODEL_VERSION}, seed {model['refit_window_end'] // HOUR_MS}"
