"""The drift stage: station minutes (from the Flink job) -> calibration proposals, on Kafka.

Input: jw.readings.station1m (jw.station_minute.v1, key station_id), one record per station
and event-time minute with each parameter's raw and calibrated minute mean and QC flags;
and the registry on jw.control.calibration (connectors/registry_feed.py), for the model in
effect at each window's end. Output: jw.calibration_proposal.v1 on jw.calibration.proposals
(key sensor). The stage never writes the registry: an operator accepts a proposal with
`jointwatch calibration accept ID`.

Per pair (calibration/drift_config.py: a low-cost sensor and the reference monitor nearest to
it), the stage builds bins of `bin_minutes` (calibration/drift_bins.py): the sensor's raw
mean, the reference's mean and the sensor station's rh / temp means. At every bin end E that
is a whole multiple of `every_bins` bins (UTC epoch), it fits the `window_bins` bins before E
(calibration/drift.py propose) and publishes a proposal when the current model has drifted.

Event time only: the watermark is the slowest input partition's newest window_end minus
`slack_minutes`; a bin is final once the watermark has passed its end (its minutes are then
reduced to means; a minute arriving after that is late: counted, logged, dropped), and E is
evaluated once the watermark has passed E. Within a partition records are in Kafka order and
the watermark waits for every partition, so any interleaving of the partitions gives the same
proposals, in the same order (by window, then sensor); proposal ids are content hashes.
(As in apportion/stage.py: a minute more than the slack out of order within its partition may
be late or not depending on the interleaving; the job emits minutes in order.)

Restarts: the input topic is the state, as in apportion/stage.py. After each evaluation the
stage commits, per partition, the offset of the oldest minute a later window still needs (or
its read position), with the last window evaluated (`evaluated_through`) in the commit's
metadata. A restart re-reads from there, so it rebuilds the bins a single pass holds and
evaluates only windows after `evaluated_through`. Commits happen only after Kafka confirmed
the proposals; a crash in between re-evaluates the same windows, and the ids of the proposals
already on the topic (read once at start) are not published again. The re-read covers the
window for every station sharing the partitions, not only the pair stations: 72 h x 60 min x
36 stations = ~155k records on the demo network, at ~80 us each for the schema check ~15 s of
catch-up at start (a restart with 10-min bins and a 6-h window re-reads 1/12 of that).
The registry is followed live, not checkpointed: the proposals of a replayed window use the
registry as it is at replay time, which gives the same model as before as long as no version
was backdated into that window (`calibration apply` refuses that unless --backdate).

Bad records (not JSON, not the schema, unknown station) are skipped with a log line and
counted (jw_drift_invalid_station_minutes_total); the stage keeps running.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import Counter, Gauge

from calibration.drift import propose
from calibration.drift_bins import COVARIATES, BinMeans, Roles, bin_means, minute_row
from calibration.drift_config import DriftConfig, Pair
from calibration.registry import Registry
from connectors.kafka_io import (
    DecodeError, UnknownStation, commit_with_metadata, consumer_config, decode_json, encode_json, ensure_topics, offer_record, producer_config,
    read_all, resume_positions, where,
)
from jointwatch.settings import Settings
from schemas.calibration import CalibrationProposal
from schemas.models import validation_errors
from schemas.network import Network
from schemas.topics import CALIBRATION, CALIBRATION_PROPOSALS, STATION_MINUTES, namespaced

log = logging.getLogger("jointwatch.calibration.drift")

DEFAULT_GROUP_ID = "jw-drift-stage"
CHECKPOINT_SCHEMA = "jw.drift_checkpoint.v1"

INVALID = Counter("jw_drift_invalid_station_minutes_total", "Station-minute records skipped (not JSON, schema, unknown station)", ["reason"])
LATE = Counter("jw_drift_late_station_minutes_total", "Station minutes of a pair station read after their bin was final (dropped)")
PROPOSALS = Counter("jw_drift_proposals_total", "Calibration proposals published", ["sensor"])
REPEATS = Counter("jw_drift_proposals_repeated_total", "Proposals not published again: their id was already on the topic (restart)")
EVALUATED_THROUGH = Gauge("jw_drift_evaluated_through_ms", "End of the last window evaluated (UTC epoch ms)")


@dataclass(frozen=True)
class Checkpoint:
    """What a restart needs: per partition the offset to read from, and the last window evaluated."""

    offsets: dict[int, int]
    evaluated_through: int | None

    def metadata(self) -> str:
        return json.dumps({"schema": CHECKPOINT_SCHEMA, "evaluated_through": self.evaluated_through}, separators=(",", ":"))

    @staticmethod
    def evaluated_through_of(metadata: str | None) -> int | None:
        if not metadata:
            return None
        try:
            doc = json.loads(metadata)
        except ValueError:
            return None
        through = doc.get("evaluated_through") if isinstance(doc, dict) and doc.get("schema") == CHECKPOINT_SCHEMA else None
        return int(through) if through is not None else None


def station_roles(pairs: Iterable[Pair]) -> dict[str, Roles]:
    """Per station the parameters it is the sensor of and the reference of (sorted, so fixed)."""
    sensor: dict[str, set[str]] = {}
    reference: dict[str, set[str]] = {}
    for p in pairs:
        sensor.setdefault(p.station_id, set()).add(p.parameter)
        reference.setdefault(p.reference_station_id, set()).add(p.parameter)
    return {s: Roles(tuple(sorted(sensor.get(s, ()))), tuple(sorted(reference.get(s, ())))) for s in sorted({*sensor, *reference})}


class DriftDetector:
    """The stage without Kafka: station minutes in (with their partition and offset), proposals out."""

    def __init__(self, network: Network, config: DriftConfig, pairs: Iterable[Pair], evaluated_through: int | None = None) -> None:
        self.network, self.config = network, config
        self.pairs = tuple(sorted(pairs, key=lambda p: p.sensor))
        self.roles = station_roles(self.pairs)
        self.bin_ms = config.bin_ms
        self.open: dict[tuple[str, int], dict[int, tuple[float, ...]]] = {}  # (station, bin start) -> minute start -> row
        self.final: dict[str, dict[int, BinMeans]] = {}  # station -> bin start -> means (bins the watermark has passed)
        self.offsets: dict[tuple[str, int], dict[int, int]] = {}  # (station, bin start) -> partition -> oldest offset
        self.partition_max: dict[int, int] = {}  # newest window_end per partition
        self.partition_min: dict[int, int] = {}  # oldest window_end per partition (where a fresh start begins)
        self.positions: dict[int, int] = {}  # next offset to read per partition
        self.waiting_for: set[int] = set()  # partitions that hold data but have not delivered any yet
        self.final_through: int | None = None  # bins ending at or before this are final
        self.evaluated_through = evaluated_through
        self.next_eval = None if evaluated_through is None else evaluated_through + config.every_ms

    def assign(self, starts: Mapping[int, int], with_data: Iterable[int]) -> None:
        """The partitions read and their start offsets; those `with_data` must be heard from before
        the first bin is final, so a partition read first cannot run the watermark past another's data."""
        self.positions.update(starts)
        self.waiting_for = set(with_data)

    def _oldest_needed(self) -> int | None:
        """Start of the oldest bin an evaluation still to come reads."""
        return None if self.next_eval is None else self.next_eval - self.config.settings.window_ms

    def offer(self, partition: int, offset: int, doc: Mapping[str, Any]) -> str:
        """Take one valid station-minute record; returns 'minute', 'progress', 'late' or 'expired'.

        UnknownStation for a station the network does not know (the caller counts and skips it).
        """
        station = doc["station_id"]
        if station not in self.network.stations:
            raise UnknownStation(f"unknown station {station!r}")
        self.positions[partition] = max(self.positions.get(partition, 0), offset + 1)
        end = doc["window_end"]
        self.partition_max[partition] = max(self.partition_max.get(partition, end), end)
        self.partition_min[partition] = min(self.partition_min.get(partition, end), end)
        self.waiting_for.discard(partition)
        roles = self.roles.get(station)
        if roles is None:
            return "progress"
        minute = doc["window_start"]
        start = minute - minute % self.bin_ms
        oldest = self._oldest_needed()
        if oldest is not None and start < oldest:
            return "expired"  # no window still to come reads it (a restart re-reads such minutes)
        if self.final_through is not None and start + self.bin_ms <= self.final_through:
            return "late"
        # The last copy of a minute wins (a re-sent minute has the same values); sorted at the reduce.
        self.open.setdefault((station, start), {})[minute] = minute_row(doc, roles)
        held = self.offsets.setdefault((station, start), {})
        held[partition] = min(held.get(partition, offset), offset)
        return "minute"

    def skip(self, partition: int, offset: int) -> None:
        """A record that could not be read still moves the read position (it is not needed again)."""
        self.positions[partition] = max(self.positions.get(partition, 0), offset + 1)

    def watermark(self) -> int | None:
        if not self.partition_max or self.waiting_for:
            return None
        return min(self.partition_max.values()) - self.config.slack_ms

    def advance(self, registry: Registry) -> list[CalibrationProposal]:
        """Reduce the bins the watermark has passed, then evaluate every window end it has passed, in order.

        `registry` gives the model in effect at each window's end (an as-of lookup, so it does not
        matter how much newer the registry is than the window, unless a version was backdated)."""
        wm = self.watermark()
        if wm is None:
            return []
        self.final_through = wm if self.final_through is None else max(self.final_through, wm)
        for key in [k for k in self.open if k[1] + self.bin_ms <= self.final_through]:
            station, start = key
            self.final.setdefault(station, {})[start] = bin_means(self.open.pop(key), self.roles[station], self.config.min_minutes_per_bin)
        if self.next_eval is None:
            every = self.config.every_ms
            self.next_eval = -(-min(self.partition_min.values()) // every) * every
            self.evaluated_through = self.next_eval - every
        out: list[CalibrationProposal] = []
        while self.next_eval <= self.final_through:
            out += self.evaluate(self.next_eval, registry)
            self.evaluated_through = self.next_eval
            self.next_eval += self.config.every_ms
            self._prune()
        return out

    def _prune(self) -> None:
        oldest = self._oldest_needed()
        assert oldest is not None
        for bins in self.final.values():
            for start in [s for s in bins if s < oldest]:
                del bins[start]
        for key in [k for k in self.offsets if k[1] < oldest]:
            del self.offsets[key]
        for key in [k for k in self.open if k[1] < oldest]:
            del self.open[key]

    def series(self, pair: Pair, window_end: int) -> dict[str, np.ndarray]:
        """The pair's bins of the window ending at window_end: bin starts, sensor raw, reference, covariates."""
        starts = np.arange(window_end - self.config.settings.window_ms, window_end, self.bin_ms, dtype=np.int64)
        sensor_bins = self.final.get(pair.station_id, {})
        reference_bins = self.final.get(pair.reference_station_id, {})
        nan = float("nan")
        out = {
            "start": starts,
            "raw": np.array([sensor_bins[s].raw[pair.parameter] if s in sensor_bins else nan for s in starts.tolist()]),
            "reference": np.array([reference_bins[s].reference[pair.parameter] if s in reference_bins else nan for s in starts.tolist()]),
        }
        for c in COVARIATES:
            out[c] = np.array([sensor_bins[s].covariates[pair.parameter][c] if s in sensor_bins else nan for s in starts.tolist()])
        return out

    def evaluate(self, window_end: int, registry: Registry) -> list[CalibrationProposal]:
        """Every pair's proposal (if any) for the window ending at window_end, by sensor."""
        out: list[CalibrationProposal] = []
        for pair in self.pairs:
            data = self.series(pair, window_end)
            models = registry.sensors.get(pair.sensor)
            current = models.at(window_end) if models is not None else None
            proposal = propose(pair.station_id, pair.parameter, pair.reference_station_id, data["start"], data["raw"],
                               data["reference"], current, {c: data[c] for c in COVARIATES}, self.config.settings)
            if proposal is not None:
                out.append(proposal)
        return out

    def checkpoint(self) -> Checkpoint:
        """Per partition the oldest offset a later window still needs, or the read position; and the last window evaluated."""
        offsets = dict(self.positions)
        for held in self.offsets.values():
            for partition, offset in held.items():
                offsets[partition] = min(offsets.get(partition, offset), offset)
        return Checkpoint(dict(sorted(offsets.items())), self.evaluated_through)


def published_ids(bootstrap: str, topic: str) -> set[str]:
    """Ids of the proposals already on the topic (any invalid message is ignored here)."""
    ids: set[str] = set()
    for _, value in read_all(bootstrap, topic, f"jw-drift-published-{uuid.uuid4().hex[:8]}"):
        try:
            doc = decode_json(value)
        except DecodeError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("proposal_id"), str):
            ids.add(doc["proposal_id"])
    return ids


class DriftStage:
    """The Kafka service around DriftDetector: every partition of the station-minute topic from the
    committed checkpoint, the registry followed live, proposals published once, commit after Kafka confirms."""

    def __init__(self, settings: Settings, network: Network, config: DriftConfig, pairs: Iterable[Pair],
                 group_id: str = DEFAULT_GROUP_ID, batch_size: int = 2000) -> None:
        self.settings, self.network, self.config, self.group_id, self.batch_size = settings, network, config, group_id, batch_size
        self.pairs = tuple(pairs)
        self.source = namespaced(STATION_MINUTES, settings.namespace)
        self.target = namespaced(CALIBRATION_PROPOSALS, settings.namespace)
        self.control = namespaced(CALIBRATION, settings.namespace)
        self._producer = Producer(producer_config(settings.kafka_bootstrap))

    def run(self, stop: threading.Event) -> None:
        from connectors.registry_feed import RegistryFeed

        bootstrap = self.settings.kafka_bootstrap
        ensure_topics(bootstrap, [STATION_MINUTES, CALIBRATION, CALIBRATION_PROPOSALS], self.settings.namespace)
        feed = RegistryFeed(bootstrap, self.control, group_id=f"{self.group_id}-calibration").start()
        published = published_ids(bootstrap, self.target)
        consumer = Consumer(consumer_config(bootstrap, self.group_id))
        for p in self.pairs:
            log.info("drift: %s against reference %s (%.2f km, %s)", p.sensor, p.reference_station_id, p.distance_km, p.basis)
        try:
            detector = self._resume(consumer)
            pending: list[CalibrationProposal] = []
            due = False  # windows evaluated whose proposals are not confirmed and committed yet
            while not stop.is_set():
                if due:
                    if not self._publish(pending, published):
                        stop.wait(1.0)  # Kafka did not confirm: publish the same proposals again
                        continue
                    self._commit(consumer, detector.checkpoint())
                    pending, due = [], False
                for msg in consumer.consume(self.batch_size, timeout=0.5):
                    self._offer(detector, msg)
                before = detector.evaluated_through
                pending = detector.advance(feed.registry)
                if detector.evaluated_through != before:
                    due = True
                    EVALUATED_THROUGH.set(detector.evaluated_through or 0)
        finally:
            consumer.close()
            feed.stop()
            self._producer.flush(10)
            log.info("drift stage stopped")

    def _resume(self, consumer: Consumer) -> DriftDetector:
        r = resume_positions(consumer, self.source)
        starts = r.starts
        through = [t for t in (Checkpoint.evaluated_through_of(m) for m in r.metadata) if t is not None]
        # Commits carry the same metadata on every partition; the oldest re-evaluates rather than skips.
        detector = DriftDetector(self.network, self.config, self.pairs, evaluated_through=min(through) if through else None)
        detector.assign(starts, r.with_data)
        consumer.assign([TopicPartition(self.source, p, starts[p]) for p in r.partitions])
        log.info("drift stage: %s -> %s, group %s, from offsets %s, windows after %s", self.source, self.target,
                 self.group_id, starts, detector.evaluated_through)
        return detector

    def _offer(self, detector: DriftDetector, msg: Message) -> None:
        taken = offer_record(msg, "station_minute", detector.offer, detector.skip, INVALID, log)
        if taken is None:
            return
        doc, outcome = taken
        if outcome == "late":
            LATE.inc()
            log.warning("%s: minute %s of %s read after its bin was final: dropped", where(msg), doc["window_start"], doc["station_id"])

    def _publish(self, proposals: list[CalibrationProposal], published: set[str]) -> bool:
        """The proposals not yet on the topic, each confirmed by Kafka, or False (those confirmed
        are marked published, so the retry sends only the others)."""
        errors: list[KafkaError] = []

        def delivered(p: CalibrationProposal) -> Any:
            def report(err: KafkaError | None, _m: Message) -> None:
                if err:
                    errors.append(err)
                else:
                    published.add(p["proposal_id"])
                    PROPOSALS.labels(p["sensor"]).inc()
                    log.info("proposal %s for %s: %s", p["proposal_id"], p["sensor"], p["reason"])
            return report

        for p in proposals:
            if p["proposal_id"] in published:
                REPEATS.inc()
                continue
            problems = validation_errors("calibration_proposal", p)
            if problems:  # a bug, not bad input: say so loudly, publish the rest
                log.error("not publishing invalid proposal %s: %s", p["proposal_id"], "; ".join(problems))
                continue
            self._producer.produce(self.target, key=p["sensor"], value=encode_json(p), on_delivery=delivered(p))
        unflushed = self._producer.flush(30)
        if unflushed or errors:
            log.error("Kafka did not confirm %d proposals (%s); publishing them again", unflushed + len(errors), errors[:3])
            return False
        return True

    def _commit(self, consumer: Consumer, cp: Checkpoint) -> None:
        commit_with_metadata(consumer, self.source, cp.offsets, cp.metadata())
