"""The apportionment stage: station hours (from the Flink job) -> jw.apportionment, on Kafka.

Input: jw.readings.station1h (jw.station_hour.v2), a station's rolling one-hour means
ending at every minute. The record whose window_end is a whole clock hour is that
clock hour's mean, so only those are kept: per air station its valid pollutant means
and the hour's wind, per river section its water parameters' means and its discharge
(`flow_mean`, m3/s, when the record carries one). Every record, whole hour or not,
water or air, moves its partition's event-time progress.

When to solve (event time only): the watermark is the slowest input partition's
newest window_end minus `slack_ms`. A station that falls silent does not hold it back
(the other stations of its partition keep it moving); a whole partition that is
silent does, as in Flink without idleness, because idleness would make processing
time decide an output. Once the watermark has passed hour H, it publishes, as
jw.apportionment.v1 records (key region):
- transport (scope region): the window of `window_h` hours ending at H, for every
  region and pollutant (apportion.transport.WindowSolver, combine_region);
- water_reach (scope reach): the same window for every reach between consecutive
  river sections and every water parameter with data (apportion.water): what the
  reach added, as load (kg/d) when the sections carry discharge and as a concentration
  increment otherwise (today's job pivots no discharge), and which region answers for it;
- source_factor (scope region): hour H of every region projected (NNLS) onto the
  profiles of its PMF model (apportion.factors), one record per species. The model is
  refitted at every whole multiple of `refit_h` event-time hours (UTC epoch hours) on
  the region's complete station hours of the `factor_window_h` before, once that
  window holds `factor_min_rows` of them; until then a region has no factor records.
Records within a partition are in Kafka order and the watermark waits for every
partition, so any interleaving of the partitions gives the same records; ids and
seeds come from the window (bootstrap seed = the window end's hour number, factor
seed = the refit's hour number), never from arrival time or the wall clock.
After each batch of windows, a progress marker (jw.apportionment_progress.v1, key
'~progress') goes to every partition of the output, after the records: a reader
that has read it on every partition has every record of those windows, including
the news that a window had none (the alert stage relies on it; record readers skip it).

State and restarts: the stage keeps each station's last `history_h` hours: a week for
the transport's local-level prior, which also covers the factor model in use (its refit
window of 144 h ended at most 23 h ago) and the river's look-back (the window plus the
longest reach's travel time, 27 h on the demo river); see Apportioner.history_h. The
factor model is a pure function of its refit window's hours, so a restart refits the
very model it had (a refit takes ~0.1 s per region). Instead of a snapshot, the
input topic itself is the state: after publishing a window, the stage commits, per
partition, the offset of the oldest station hour it still needs (or its read
position if it needs none), with the last window it emitted (`emitted_through`) in
the commit's metadata. A restart reads from there, so it rebuilds exactly the
history a single pass would hold, and emits only windows after `emitted_through`:
no duplicates, byte-identical records. The cost is a re-read of up to a week of
station hours at start (36 stations x 60 rolling records x 168 h = ~360k for the demo
network; decoding, schema checks and offering took 80-250 us each here, the more with
the machine busy, so 30-90 s of catch-up before the next window; measured by
scripts/apportion_stage_cost.py), simpler than keeping a second copy of that history
in a snapshot topic and never out of step with it. A 30-day factor window
(factor_window_h=720) would make it 743 h, ~1.6M records. Commits
happen only after Kafka confirmed the window's records, so a crash in between
re-emits identical records (same ids), never loses a window.

Bad records (not JSON, not the schema, unknown station) are skipped with a log line
and counted (jw_apportion_invalid_station_hours_total); the stage keeps running.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from apportion.factors import DETECTION_LIMITS, FactorModel, fit_region, project_rows
from apportion.geometry import air_stations
from apportion.records import factor_records, transport_record, water_records
from apportion.transport import AirSeries, TransportConfig, WindowSolver, combine_region
from apportion.water import attribute_reaches, river_sections
from connectors.kafka_io import (
    UnknownStation, commit_with_metadata, consumer_config, encode_json, ensure_topics, offer_record, producer_config, resume_positions,
    where,
)
from jobs.validity import AQI_POLLUTANTS, MIN_MINUTES
from jointwatch.settings import Settings
from schemas.apportionment import Apportionment
from schemas.models import StationHour, progress_marker, validation_errors
from schemas.network import Network, Station
from schemas.parameters import PARAMETERS
from schemas.topics import APPORTIONMENT, STATION_HOURS, namespaced

log = logging.getLogger("jointwatch.apportion")

HOUR_MS = 3_600_000
DEFAULT_GROUP_ID = "jw-apportion-stage"
CHECKPOINT_SCHEMA = "jw.apportion_checkpoint.v1"
PROGRESS_KEY = "~progress"  # key of the progress markers (no region is named so)
# Primary pollutants: emitted, so they travel as plumes. O3 is formed in the air, so a
# receptor-on-upwind-signal regression says little about where it came from.
TRANSPORT_POLLUTANTS: tuple[str, ...] = ("pm25", "pm10", "so2", "no2", "co")
# Water parameters whose load adds up along a river; pH (logarithmic) and dissolved oxygen
# (consumed, not discharged) are no loads a reach could be made to answer for.
REACH_PARAMETERS: tuple[str, ...] = ("codmn", "nh3n", "tp")
# A water section's discharge (m3/s), as `flow_mean` / `flow_minutes` of its station hours. The job
# does not pivot a discharge parameter yet, so today every reach record has basis "concentration".
FLOW = "flow"
WIND = ("wind_speed", "wind_dir")

RECORDS = Counter("jw_apportion_records_total", "Region apportionment records published", ["pollutant", "origin"])
INVALID = Counter("jw_apportion_invalid_station_hours_total", "Station-hour records skipped (not JSON, schema, unknown station)", ["reason"])
LATE = Counter("jw_apportion_late_station_hours_total", "Whole-hour records read after their window was solved (kept for later windows) or too old to matter")
SOLVE_SECONDS = Histogram("jw_apportion_hour_seconds", "Solving one hour: transport, river reaches, source factors (and their refit)", buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
EMITTED_THROUGH = Gauge("jw_apportion_emitted_through_ms", "End of the last window solved (UTC epoch ms)")


@dataclass(frozen=True)
class StageConfig:
    window_h: int = 6  # the demo's 3-h plume is clear in 6-h windows of hourly means; the issue asks 6-24 h
    min_hours: int = 3  # valid hours a receptor needs in the window to be solved
    min_minutes: int = MIN_MINUTES  # a valid hourly mean, as the job's clock hours
    slack_ms: int = 5 * 60_000  # disorder tolerated inside a partition (the job emits station hours in minute order)
    pollutants: tuple[str, ...] = TRANSPORT_POLLUTANTS
    transport: TransportConfig = field(default_factory=TransportConfig)
    water_parameters: tuple[str, ...] = REACH_PARAMETERS
    river_velocity_kmh: float = 3.0  # travel time = river km / velocity (the demo river's, simulator ScenarioConfig.river_speed_kmh)
    factor_species: tuple[str, ...] = AQI_POLLUTANTS  # columns of the factor model (apportion.factors)
    factors: int = 3  # six species hold at most a few factors (Q/Qexp in every record helps to choose)
    # Six days of a region's station hours (1440 rows for ten stations; a fit takes 0.1-0.3 s): with the
    # refit period the look-back stays within the transport's week, so a restart re-reads no more.
    # 30 days (720) also works, at ~0.25 s per region and refit (7200 synthetic rows) and a 4.4x longer re-read at restart.
    factor_window_h: int = 144
    refit_h: int = 24  # event-time hours between refits (at whole multiples of it, UTC epoch hours)
    factor_min_rows: int = 240  # complete station hours a refit needs (a day of a ten-station region)
    factor_restarts: int = 3
    factor_error_fraction: float = 0.1

    def __post_init__(self) -> None:
        unknown = [s for s in self.factor_species if s not in DETECTION_LIMITS]
        if unknown:
            raise ValueError(f"factor_species {unknown} have no detection limit (apportion.factors.DETECTION_LIMITS)")
        if self.refit_h < 1 or self.factor_window_h < 1:
            raise ValueError("refit_h and factor_window_h must be >= 1")
        m, p = len(self.factor_species), self.factors
        # Q/Qexp in every record needs Qexp = n m - p (n + m) > 0 for the fewest rows a refit takes.
        if not 1 <= p < m or self.factor_min_rows * (m - p) <= p * m:
            raise ValueError(f"{p} factors of {m} species need 1 <= factors < species and factor_min_rows > {p * m // max(m - p, 1)}")

    @property
    def transport_h(self) -> int:
        """Hours back from a window's end the transport solver reads: the local prior's week, the usual
        level's look-back, and the window plus the longest transport lag (apportion.transport.WindowSolver)."""
        t = self.transport
        return int(math.ceil(max(t.local_prior_h, t.usual_h, self.window_h + t.max_lag_h)))

    @property
    def factor_h(self) -> int:
        """Hours back from an hour the factor model in use reaches: its refit was up to refit_h - 1
        hours before, on the factor_window_h hours before that."""
        return self.factor_window_h + self.refit_h - 1

    @property
    def history_h(self) -> int:
        """Hours of station hours kept (and re-read after a restart), the river's aside (Apportioner.history_h)."""
        return max(self.transport_h, self.factor_h)


@dataclass(frozen=True)
class HourSample:
    """One station's clock hour: valid means of the stage's parameters (NaN if invalid) and the hour's
    wind ('wind_speed', 'wind_dir' in degrees the wind comes FROM; NaN when calm, variable or missing)."""

    station_id: str
    hour_end: int
    values: Mapping[str, float]


def hourly_sample(doc: StationHour, parameters: Iterable[str], min_minutes: int) -> HourSample | None:
    """The clock-hour sample of a rolling-hour record, or None when the record is not one.

    The rolling hour ending on a whole clock hour is exactly that clock hour; the others
    overlap two clock hours and are only progress.
    """
    end = doc["window_end"]
    if end % HOUR_MS or end - doc["window_start"] != HOUR_MS:
        return None
    raw: Mapping[str, Any] = doc  # type: ignore[assignment]
    values = {}
    for p in parameters:
        mean, minutes = raw.get(f"{p}_mean"), raw.get(f"{p}_minutes", 0)
        values[p] = float(mean) if mean is not None and minutes >= min_minutes else math.nan
    speed = doc["wind_speed_mean"]
    s, c = doc["wind_dir_sin_mean"], doc["wind_dir_cos_mean"]
    # The direction gates upwind stations; a partial hour still says where the air came from,
    # but a mean unit vector this short means the wind turned through the hour (no direction).
    values["wind_speed"] = float(speed) if speed is not None else math.nan
    values["wind_dir"] = math.degrees(math.atan2(s, c)) % 360.0 if s is not None and c is not None and math.hypot(s, c) >= 0.1 else math.nan
    return HourSample(doc["station_id"], end, values)


@dataclass(frozen=True)
class Checkpoint:
    """What a restart needs: per partition the offset to read from, and the last window emitted."""

    offsets: dict[int, int]
    emitted_through: int | None

    def metadata(self) -> str:
        return json.dumps({"schema": CHECKPOINT_SCHEMA, "emitted_through": self.emitted_through}, separators=(",", ":"))

    @staticmethod
    def emitted_through_of(metadata: str | None) -> int | None:
        if not metadata:
            return None
        doc = json.loads(metadata)
        return int(doc["emitted_through"]) if doc.get("schema") == CHECKPOINT_SCHEMA and doc.get("emitted_through") is not None else None


class Apportioner:
    """The stage without Kafka: station hours in (with their partition and offset), records out."""

    def __init__(self, network: Network, config: StageConfig = StageConfig(), emitted_through: int | None = None) -> None:
        self.network, self.config = network, config
        self.stations = air_stations(network)
        self.sections = river_sections(network)
        self.regions = sorted({s.region for s in self.stations})
        self.region_stations = {r: tuple(s for s in self.stations if s.region == r) for r in self.regions}
        self.parameters = {"air": tuple(dict.fromkeys((*config.pollutants, *config.factor_species))),
                           "water": (*config.water_parameters, FLOW)}
        self.kept = {s.id for s in (*self.stations, *self.sections)}  # stations whose hours some output reads
        reach_km = [b.river_km - a.river_km for a, b in zip(self.sections, self.sections[1:])]  # type: ignore[operator]
        # A reach window reads its upstream section's hours one travel time before the window.
        self.water_h = config.window_h + math.ceil(max(reach_km, default=0.0) / config.river_velocity_kmh)
        self.history_h = max(config.history_h, self.water_h)
        self.history: dict[int, dict[str, tuple[HourSample, int, int]]] = {}  # hour end -> station -> (sample, partition, offset)
        self.models: dict[str, tuple[int, FactorModel | None]] = {}  # region -> (refit window end, model or None: too few rows)
        self.partition_max: dict[int, int] = {}  # newest window_end per partition
        self.partition_min: dict[int, int] = {}  # oldest window_end per partition (where a fresh start begins)
        self.positions: dict[int, int] = {}  # next offset to read per partition
        self.waiting_for: set[int] = set()  # partitions that hold data but have not delivered any yet
        self.emitted_through = emitted_through
        self.next_hour = None if emitted_through is None else emitted_through + HOUR_MS
        self.last_solve_s = 0.0
        self.last_solve_parts: dict[str, float] = {}  # seconds of the last hour per part (transport, water, factors)

    @property
    def history_ms(self) -> int:
        return self.history_h * HOUR_MS

    def assign(self, starts: Mapping[int, int], with_data: Iterable[int]) -> None:
        """The partitions read and their start offsets; those `with_data` must be heard from before
        the first window, so a partition read first cannot run the watermark past another's data."""
        self.positions.update(starts)
        self.waiting_for = set(with_data)

    def offer(self, partition: int, offset: int, doc: StationHour) -> str:
        """Take one valid station-hour record; returns 'hour', 'progress', 'late' or 'expired'.

        UnknownStation for a station the network does not know (the caller counts and skips it).
        """
        if doc["station_id"] not in self.network.stations:
            raise UnknownStation(f"unknown {doc['medium']} station {doc['station_id']!r}")
        self.positions[partition] = max(self.positions.get(partition, 0), offset + 1)
        end = doc["window_end"]
        self.partition_max[partition] = max(self.partition_max.get(partition, end), end)
        self.partition_min[partition] = min(self.partition_min.get(partition, end), end)
        self.waiting_for.discard(partition)
        kept = doc["station_id"] in self.kept
        sample = hourly_sample(doc, self.parameters[doc["medium"]], self.config.min_minutes) if kept else None
        if sample is None:
            return "progress"
        if self.next_hour is not None and end <= self.next_hour - self.history_ms:
            return "expired"  # no window still to come reads it
        # Latest copy wins (a re-sent record has the same values); a restart re-reads it from its offset.
        self.history.setdefault(end, {})[sample.station_id] = (sample, partition, offset)
        return "late" if self.next_hour is not None and end < self.next_hour else "hour"

    def skip(self, partition: int, offset: int) -> None:
        """A record that could not be read still moves the read position (it is not needed again)."""
        self.positions[partition] = max(self.positions.get(partition, 0), offset + 1)

    def watermark(self) -> int | None:
        if not self.partition_max or self.waiting_for:
            return None
        return min(self.partition_max.values()) - self.config.slack_ms

    def advance(self) -> list[Apportionment]:
        """Solve every window whose end the watermark has passed, in order."""
        wm = self.watermark()
        if wm is None:
            return []
        if self.next_hour is None:
            self.next_hour = -(-min(self.partition_min.values()) // HOUR_MS) * HOUR_MS
            # No window ends before the first whole hour of data: say so at once (a progress marker),
            # so readers waiting for apportionment need not wait for the first hour to be solved.
            self.emitted_through = self.next_hour - HOUR_MS
        out: list[Apportionment] = []
        while self.next_hour <= wm:
            started = time.perf_counter()
            out += self.solve(self.next_hour)
            self.last_solve_s = time.perf_counter() - started
            self.emitted_through = self.next_hour
            self.next_hour += HOUR_MS
            cutoff = self.next_hour - self.history_ms
            for end in [e for e in self.history if e <= cutoff]:
                del self.history[end]
        return out

    def checkpoint(self) -> Checkpoint:
        """Per partition the oldest offset still needed (air and water history alike), or the read
        position, and the last window emitted."""
        offsets = dict(self.positions)
        for stations in self.history.values():
            for _, partition, offset in stations.values():
                offsets[partition] = min(offsets.get(partition, offset), offset)
        return Checkpoint(dict(sorted(offsets.items())), self.emitted_through)

    def solve(self, hour_end: int) -> list[Apportionment]:
        """Every record of hour_end: region transport windows, river reach windows, region source factors."""
        out: list[Apportionment] = []
        for part, records_of in (("transport", self._transport), ("water", self._water), ("factors", self._factors)):
            started = time.perf_counter()
            out += records_of(hour_end)
            self.last_solve_parts[part] = time.perf_counter() - started
        return out

    def _series(self, stations: tuple[Station, ...], ends: list[int], keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Per key a (station, hour) array of the kept samples' values at the given hour ends (NaN: none)."""
        row = {s.id: i for i, s in enumerate(stations)}
        out = {k: np.full((len(stations), len(ends)), np.nan) for k in keys}
        for j, end in enumerate(ends):
            for station, (sample, _, _) in self.history.get(end, {}).items():
                i = row.get(station)
                if i is not None:
                    for k, values in out.items():
                        values[i, j] = sample.values[k]
        return out

    def _transport(self, hour_end: int) -> list[Apportionment]:
        """Region records of every pollutant for the window of window_h hours ending at hour_end."""
        cfg = self.config
        look_back = cfg.transport_h * HOUR_MS
        ends = [e for e in range(hour_end - look_back + HOUR_MS, hour_end + HOUR_MS, HOUR_MS) if e in self.history]
        if not ends or ends[-1] <= hour_end - cfg.window_h * HOUR_MS:
            return []  # nothing in the window
        ends = list(range(ends[0], hour_end + HOUR_MS, HOUR_MS))  # contiguous, gaps are NaN
        data = self._series(self.stations, ends, (*cfg.pollutants, *WIND))
        t = len(ends)
        transport = replace(cfg.transport, seed=hour_end // HOUR_MS)
        out: list[Apportionment] = []
        for p in cfg.pollutants:
            has = np.isfinite(data[p]).any(axis=0)
            if not has[-cfg.window_h:].any():
                continue
            # The series starts at the pollutant's first hour with data: the solver's look-back
            # quantiles must not count hours before the stream began as clean air.
            first = int(np.argmax(has))
            series = AirSeries(self.stations, data[p][:, first:], data["wind_speed"][:, first:], data["wind_dir"][:, first:], 1.0)
            t1 = t - first
            t0 = max(0, t1 - cfg.window_h)
            valid = np.isfinite(series.conc[:, t0:t1]).sum(axis=1)
            solver: WindowSolver | None = None
            for region in self.regions:
                receptors = [j for j, s in enumerate(self.stations) if s.region == region and valid[j] >= cfg.min_hours]
                if not receptors:
                    continue
                solver = solver or WindowSolver(series, t0, t1, transport)
                result = combine_region([solver.solve(j) for j in receptors], transport)
                out.append(transport_record(result, p, ends[first] - HOUR_MS, HOUR_MS, transport.seed, scope="region"))
        return out

    def _water(self, hour_end: int) -> list[Apportionment]:
        """Reach records (apportion.water) of every water parameter with data in the window ending at hour_end."""
        cfg = self.config
        ends = list(range(hour_end - (self.water_h - 1) * HOUR_MS, hour_end + HOUR_MS, HOUR_MS))
        data = self._series(self.sections, ends, self.parameters["water"])
        flow = data[FLOW] if np.isfinite(data[FLOW]).any() else None  # none: concentration increments, as water.py says
        t0, t1 = len(ends) - cfg.window_h, len(ends)
        out: list[Apportionment] = []
        for p in cfg.water_parameters:
            if not np.isfinite(data[p][:, t0:t1]).any():
                continue
            result = attribute_reaches(self.sections, data[p], t0, t1, 1.0, cfg.river_velocity_kmh, p, PARAMETERS[p].unit, flow=flow)
            out += water_records(result, self.network, ends[0] - HOUR_MS, HOUR_MS)
        return out

    def _factors(self, hour_end: int) -> list[Apportionment]:
        """Every region's hour projected onto the profiles of its model in use (apportion.factors).

        A station's row is projected when at least half its species are valid."""
        cfg = self.config
        out: list[Apportionment] = []
        for region in self.regions:
            model = self._model(region, hour_end - hour_end % (cfg.refit_h * HOUR_MS))
            if model is None:
                continue
            stations = self.region_stations[region]
            data = self._series(stations, [hour_end], cfg.factor_species)
            X = np.stack([data[s][:, 0] for s in cfg.factor_species], axis=1)  # (station, species)
            rows = np.flatnonzero(2 * np.isfinite(X).sum(axis=1) >= len(cfg.factor_species))
            if rows.size:
                G = project_rows(model, X[rows])
                out += factor_records(model, [stations[i] for i in rows], X[rows], G, hour_end - HOUR_MS, hour_end, cfg.refit_h)
        return out

    def _model(self, region: str, refit_end: int) -> FactorModel | None:
        """The region's model fitted at refit_end on the factor_window_h hours before it, kept until the
        next refit; None while that window holds fewer than factor_min_rows complete station hours.

        A pure function of those hours (rows ordered by hour, then station; seed = refit_end's hour
        number), so a restart that re-read them refits the very same model."""
        cached = self.models.get(region)
        if cached is not None and cached[0] == refit_end:
            return cached[1]
        cfg = self.config
        start = refit_end - cfg.factor_window_h * HOUR_MS
        data = self._series(self.region_stations[region], list(range(start + HOUR_MS, refit_end + HOUR_MS, HOUR_MS)), cfg.factor_species)
        X = np.stack([data[s].T for s in cfg.factor_species], axis=2).reshape(-1, len(cfg.factor_species))
        X = X[np.isfinite(X).all(axis=1)]
        model = None
        if len(X) >= cfg.factor_min_rows:
            model = fit_region(region, X, cfg.factor_species, cfg.factors, (start, refit_end), refit_end // HOUR_MS,
                               cfg.factor_restarts, cfg.factor_error_fraction)
        self.models[region] = (refit_end, model)
        return model


class ApportionStage:
    """The Kafka service around Apportioner: assign every partition of the station-hour topic,
    resume from the committed checkpoint, publish with an idempotent producer, commit after Kafka confirms."""

    def __init__(self, settings: Settings, network: Network, group_id: str = DEFAULT_GROUP_ID,
                 config: StageConfig = StageConfig(), batch_size: int = 2000) -> None:
        self.settings, self.network, self.group_id, self.config, self.batch_size = settings, network, group_id, config, batch_size
        self.source = namespaced(STATION_HOURS, settings.namespace)
        self.target = namespaced(APPORTIONMENT, settings.namespace)
        self._producer = Producer(producer_config(settings.kafka_bootstrap))

    def run(self, stop: threading.Event) -> None:
        ensure_topics(self.settings.kafka_bootstrap, [STATION_HOURS, APPORTIONMENT], self.settings.namespace)
        consumer = Consumer(consumer_config(self.settings.kafka_bootstrap, self.group_id))
        try:
            app = self._resume(consumer)
            partitions = sorted(self._producer.list_topics(self.target, timeout=10).topics[self.target].partitions)
            pending: list[Apportionment] = []
            due = False  # windows solved (records or not) whose progress marker is not confirmed yet
            while not stop.is_set():
                if due:
                    if not self._publish(pending, app.emitted_through, partitions):
                        stop.wait(1.0)  # Kafka did not confirm: publish the same records again
                        continue
                    self._commit(consumer, app.checkpoint())
                    pending, due = [], False
                for msg in consumer.consume(self.batch_size, timeout=0.5):
                    self._offer(app, msg)
                before = app.emitted_through
                pending = app.advance()
                if app.emitted_through != before:
                    due = True
                    SOLVE_SECONDS.observe(app.last_solve_s)
                    EMITTED_THROUGH.set(app.emitted_through or 0)
        finally:
            consumer.close()
            self._producer.flush(10)
            log.info("apportionment stage stopped")

    def _resume(self, consumer: Consumer) -> Apportioner:
        r = resume_positions(consumer, self.source)
        starts = r.starts
        through = [t for t in (Checkpoint.emitted_through_of(m) for m in r.metadata) if t is not None]
        # Commits carry the same metadata on every partition; the oldest re-emits rather than skips.
        app = Apportioner(self.network, self.config, emitted_through=min(through) if through else None)
        app.assign(starts, r.with_data)
        consumer.assign([TopicPartition(self.source, p, starts[p]) for p in r.partitions])
        log.info("apportionment stage: %s -> %s, group %s, from offsets %s, windows after %s", self.source, self.target,
                 self.group_id, starts, app.emitted_through)
        return app

    def _offer(self, app: Apportioner, msg: Message) -> None:
        taken = offer_record(msg, "station_hour", app.offer, app.skip, INVALID, log)
        if taken is None:
            return
        doc, outcome = taken
        if outcome in ("late", "expired"):
            LATE.inc()
            log.warning("%s: station hour %s of %s read after its window was solved (%s)", where(msg), doc["window_end"], doc["station_id"], outcome)

    def _publish(self, records: list[Apportionment], emitted_through: int | None, partitions: list[int]) -> bool:
        """The windows' records, then a progress marker on every partition (after the records, in
        partition order: the idempotent producer keeps it), all confirmed by Kafka or False."""
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _m: Message) -> None:
            if err:
                errors.append(err)

        for rec in records:
            problems = validation_errors("apportionment", rec)
            if problems:  # a bug, not bad input: say so loudly, publish the rest
                log.error("not publishing invalid apportionment %s: %s", rec["record_id"], "; ".join(problems))
                continue
            RECORDS.labels(rec["pollutant"], "yes" if rec["origin_region"] else "none").inc()
            self._producer.produce(self.target, key=rec["region"], value=encode_json(rec), on_delivery=delivered)
        if emitted_through is not None:
            marker = encode_json(progress_marker(emitted_through, self.group_id))
            for p in partitions:
                self._producer.produce(self.target, key=PROGRESS_KEY, value=marker, partition=p, on_delivery=delivered)
        unflushed = self._producer.flush(30)
        if unflushed or errors:
            log.error("Kafka did not confirm %d apportionment records (%s); publishing them again", unflushed + len(errors), errors[:3])
            return False
        return True

    def _commit(self, consumer: Consumer, cp: Checkpoint) -> None:
        commit_with_metadata(consumer, self.source, cp.offsets, cp.metadata())
