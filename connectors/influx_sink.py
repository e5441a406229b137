"""The InfluxDB sink: aggregates, station hours and minutes, indices, alerts and apportionment from Kafka into InfluxDB, committed after the write.

A point's measurement, tags and time identify it, so writing it again
overwrites it: re-processing after a crash (offsets not yet committed) is
idempotent, and a revised one-minute window (jw.readings.revisions, version >= 2)
replaces its first result. Targets InfluxDB 1.8's v2-compatible API (bucket "db/rp", org "-",
token "user:password") and InfluxDB 2.x alike.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException
from prometheus_client import Counter, Histogram
from urllib3.exceptions import HTTPError

from connectors.kafka_io import DecodeError, consumer_config, decode_json, ensure_topics, position, where
from jobs.validity import INDEX_PARAMETERS
from jointwatch.settings import Settings
from jointwatch.stack.secrets import Secrets
from schemas.apportionment import Apportionment
from schemas.models import Aggregate, Alert, Index, StationHour, StationMinute, is_progress, validation_errors
from schemas.topics import (
    ALERTS, APPORTIONMENT, INDICES, READINGS_ALIGNED, READINGS_HOURLY, READINGS_REVISIONS, STATION_HOURS, STATION_MINUTES, Topic, namespaced,
)

log = logging.getLogger(__name__)

DEFAULT_GROUP_ID = "jw-influx-sink"

MESSAGES_CONSUMED = Counter("jw_sink_messages_consumed", "Kafka messages read", ["topic"])
INVALID_MESSAGES = Counter("jw_sink_invalid_messages", "Messages skipped: not JSON or not matching their schema", ["topic"])
EMPTY_RECORDS = Counter("jw_sink_empty_records", "Valid records skipped: nothing to store (every field null)", ["topic"])
POINTS_WRITTEN = Counter("jw_sink_points_written", "Points acknowledged by InfluxDB")
POINTS_REJECTED = Counter("jw_sink_points_rejected", "Points InfluxDB refused as malformed (HTTP 400), skipped")
WRITE_FAILURES = Counter("jw_sink_write_failures", "Failed batch writes (retried; offsets not committed meanwhile)")
SUPERSEDED = Counter("jw_sink_superseded_aggregates", "Aggregates not written because a higher version of the window was written already")
WRITE_LATENCY = Histogram("jw_sink_write_latency_seconds", "Duration of one successful batch write")


def aggregate_point(agg: Aggregate) -> Point:
    """Measurement 'aggregate', one series per station, parameter and window kind, at window_end."""
    return (
        Point("aggregate")
        .tag("station_id", agg["station_id"])
        .tag("region", agg["region"])
        .tag("medium", agg["medium"])
        .tag("parameter", agg["parameter"])
        .tag("window", agg["window"])
        # float(): JSON may carry 35 for 35.0, and InfluxDB fixes a field's type at first write.
        .field("mean", float(agg["mean"]))
        .field("min", float(agg["min"]))
        .field("max", float(agg["max"]))
        .field("count", int(agg["count"]))
        .field("duplicates", int(agg["duplicates"]))
        .field("clock_corrected", int(agg["clock_corrected"]))
        .field("minutes", int(agg["minutes"]))
        .field("expected", float(agg["expected"]))
        .field("completeness", float(agg["completeness"]))
        .field("version", int(agg["version"]))
        .time(agg["window_end"], WritePrecision.MS)
    )


def alert_point(alert: Alert) -> Point:
    """Measurement 'alert' at window_end, one series per subject, kind and indicator; the alert_id
    field makes a replayed alert overwrite itself. value/threshold are absent when null."""
    point = (
        Point("alert")
        .tag("scope", alert["scope"])
        .tag("subject", alert["subject"])
        .tag("region", alert["region"])
        .tag("origin_region", alert["origin_region"])
        .tag("kind", alert["kind"])
        .tag("indicator", alert["indicator"])
        .tag("tier", alert["tier"])
        .tag("rule_id", alert["rule_id"])
        .field("alert_id", alert["alert_id"])
        .field("episode_id", alert["episode_id"])
        .field("action", alert["action"])
        .field("previous_tier", alert["previous_tier"])
        .field("reason", alert["reason"])
        .field("affected_regions", ",".join(alert["affected_regions"]))
        .field("completeness", float(alert["completeness"]))
        .field("rule_version", int(alert["rule_version"]))
        .time(alert["window_end"], WritePrecision.MS)
    )
    for name in ("value", "threshold"):
        if alert[name] is not None:
            point.field(name, float(alert[name]))
    return point


def index_point(index: Index) -> Point:
    """Measurement 'index' at window_end, one series per station, index and edition; insufficient data has no value field."""
    point = (
        Point("index")
        .tag("station_id", index["station_id"])
        .tag("region", index["region"])
        .tag("index", index["index"])
        .tag("standard_id", index["standard_id"])
        .field("index_id", index["index_id"])
        .field("insufficient_data", index["insufficient_data"])
        .time(index["window_end"], WritePrecision.MS)
    )
    if index["value"] is not None:
        point.field("value", int(index["value"])).field("label", str(index["label"])).field("primary", ",".join(index["primary"]))
    return point


def station_hour_point(hour: StationHour) -> Point:
    """Measurement 'station_hour' at window_end: the rolling one-hour mean and minutes of every
    index parameter the station had in the hour (and the hour's wind), one series per station."""
    point = Point("station_hour").tag("station_id", hour["station_id"]).tag("region", hour["region"]).tag("medium", hour["medium"])
    for key, value in sorted(hour.items()):
        if value is None or key in ("schema", "station_id", "region", "medium", "window_start", "window_end"):
            continue
        point.field(key, int(value) if key.endswith("_minutes") else float(value))
    return point.time(hour["window_end"], WritePrecision.MS)


def apportionment_point(rec: Apportionment) -> Point:
    """Measurement 'apportionment' at window_end, one series per kind, region, receptor, pollutant and
    origin ('none' when no origin was named): per key of `shares` (origin regions and 'local'; a reach's
    responsible regions; a source factor's key) its share and, where estimated, its bootstrap sd and
    5-95 % interval; amounts with their basis and unit, fit and model version; for a source factor the
    model's refit window end, factor count and Q/Qexp (its profiles stay in the Kafka record). The
    record_id field makes a replayed record overwrite itself."""
    point = (
        Point("apportionment")
        .tag("region", rec["region"])
        .tag("receptor", rec["receptor"])
        .tag("pollutant", rec["pollutant"])
        .tag("origin", rec["origin_region"] or "none")
        .tag("kind", rec["kind"])
        .field("record_id", rec["record_id"])
        .field("affected_regions", ",".join(rec["affected_regions"]))
        .field("basis", rec["basis"])
        .field("unit", rec["unit"])
        .field("n_steps", int(rec["fit"]["n_steps"]))
        .field("model_version", rec["provenance"]["model_version"])
        .time(rec["window_end"], WritePrecision.MS)
    )
    model = rec["provenance"].get("factor_model")
    if model is not None:
        point.field("refit_window_end", int(model["refit_window_end"])).field("n_factors", int(model["n_factors"]))
        point.field("q_ratio", float(model["q_ratio"]))
    for key, share in rec["shares"].items():
        point.field(f"share_{key}", float(share))
        if key in rec["uncertainty"]:
            u = rec["uncertainty"][key]
            point.field(f"share_{key}_sd", float(u["sd"])).field(f"share_{key}_lo", float(u["lo"])).field(f"share_{key}_hi", float(u["hi"]))
    for key, amount in rec["amounts"].items():
        point.field(f"amount_{key}", float(amount))
    for name in ("r2", "rmse"):
        if rec["fit"][name] is not None:
            point.field(name, float(rec["fit"][name]))  # type: ignore[literal-required]
    return point


def _present(value: Any) -> bool:
    """Not null, and not a non-finite float (JSON NaN/Infinity), which line protocol cannot carry."""
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def station_minute_point(minute: StationMinute) -> Point | None:
    """Measurement 'station_minute' at window_end, one series per station: per index parameter p with
    data its calibrated value `p`, the measured minute mean `p_raw`, the QC bitmask `p_qc` (integer,
    calibration/qc.py QcFlag) and the model applied `p_model` ('model_id@version', a string field:
    provenance, not a tag, to keep series cardinality down), and the rh / temp covariates. Null fields
    are left out (a value without calibration has `p_raw` and `p_qc` only; a parameter with only
    invalid-status readings has `p_qc` only); None when no field is left (nothing to store)."""
    point = Point("station_minute").tag("station_id", minute["station_id"]).tag("region", minute["region"]).tag("medium", minute["medium"])
    doc: dict[str, Any] = minute  # type: ignore[assignment]  # the per-parameter keys are not in the TypedDict
    fields = 0
    for name in ("rh", "temp"):
        if _present(doc[name]):
            point.field(name, float(doc[name]))
            fields += 1
    for p in INDEX_PARAMETERS:
        # float(): JSON may carry 35 for 35.0, and InfluxDB fixes a field's type at first write.
        for key, kind in ((p, float), (f"{p}_raw", float), (f"{p}_qc", int), (f"{p}_model", str)):
            value = doc.get(key)
            if _present(value):
                point.field(key, kind(value))
                fields += 1
    return point.time(minute["window_end"], WritePrecision.MS) if fields else None


# Topic -> (schema the messages must match, conversion; a conversion returning None has nothing to store).
CONVERSIONS: dict[Topic, tuple[str, Callable[[Any], Point | None]]] = {
    READINGS_ALIGNED: ("aggregate", aggregate_point),
    READINGS_REVISIONS: ("aggregate", aggregate_point),
    READINGS_HOURLY: ("aggregate", aggregate_point),
    STATION_HOURS: ("station_hour", station_hour_point),
    STATION_MINUTES: ("station_minute", station_minute_point),
    INDICES: ("index", index_point),
    ALERTS: ("alert", alert_point),
    APPORTIONMENT: ("apportionment", apportionment_point),
}


class Versions:
    """The highest version written per revised window (bounded, most recent kept), so that a first
    result read after its revision (the two topics are consumed independently) does not overwrite it."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str, str, int], int] = OrderedDict()

    def supersedes(self, agg: Aggregate) -> bool:
        """True if a higher version of `agg`'s window was written; else remembers `agg`'s version if revised."""
        key = (agg["station_id"], agg["parameter"], agg["window"], agg["window_start"])
        seen = self._seen.get(key, 0)
        if seen > agg["version"]:
            return True
        if agg["version"] > 1:
            self._seen[key] = agg["version"]
            self._seen.move_to_end(key)
            if len(self._seen) > self.capacity:
                self._seen.popitem(last=False)
        return False


# Topic -> which of its messages are progress markers for its readers, not data (nothing to store).
MARKERS: dict[Topic, Callable[[Any], bool]] = {APPORTIONMENT: is_progress}


def is_marker(topic: Topic, doc: Any) -> bool:
    return topic in MARKERS and MARKERS[topic](doc)


def to_point(topic: Topic, doc: Any) -> Point | None:
    """Validate a decoded message of `topic` and convert it (None for a marker or a record with nothing
    to store); ValueError says why it is invalid."""
    if is_marker(topic, doc):
        return None
    schema, convert = CONVERSIONS[topic]
    errors = validation_errors(schema, doc)
    if errors:
        raise ValueError(f"not a valid {schema}: " + "; ".join(errors))
    return convert(doc)


class InfluxSink:
    def __init__(
        self,
        settings: Settings,
        token: str,
        *,
        group_id: str = DEFAULT_GROUP_ID,
        batch_size: int = 500,
        poll_timeout_s: float = 1.0,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        write_timeout_ms: int = 10_000,
    ) -> None:
        self.settings, self.group_id, self.batch_size = settings, group_id, batch_size
        self.poll_timeout_s, self.retry_base_s, self.retry_max_s = poll_timeout_s, retry_base_s, retry_max_s
        self.bucket = f"{settings.influx_db}/autogen"
        self.topics = {namespaced(t, settings.namespace): t for t in CONVERSIONS}
        self._client = InfluxDBClient(url=settings.influx_url, token=token, org="-", timeout=write_timeout_ms)
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)
        self._versions = Versions()

    @classmethod
    def create(cls, settings: Settings, secrets: Secrets, **options: Any) -> InfluxSink:
        return cls(settings, secrets.influx_token, **options)

    def run(self, stop: threading.Event) -> None:
        """Consume, write and commit until `stop` is set; then close."""
        ensure_topics(self.settings.kafka_bootstrap, CONVERSIONS, self.settings.namespace)
        consumer = Consumer(consumer_config(self.settings.kafka_bootstrap, self.group_id))
        consumer.subscribe(list(self.topics))
        log.info("InfluxDB sink: %s -> %s bucket %s, group %s", sorted(self.topics), self.settings.influx_url, self.bucket, self.group_id)
        try:
            while not stop.is_set():
                messages = consumer.consume(num_messages=self.batch_size, timeout=self.poll_timeout_s)
                if not messages:
                    continue
                points, offsets = self.convert(messages)
                if points and not self.write(points, stop):
                    break  # stopped while InfluxDB was failing: leave the batch uncommitted
                if offsets:
                    _commit(consumer, offsets)
        finally:
            consumer.close()
            self._client.close()
            log.info("InfluxDB sink stopped")

    def convert(self, messages: list[Message]) -> tuple[list[Point], list[TopicPartition]]:
        """Points of the valid messages, and the offsets to commit once they are written."""
        points: list[Point] = []
        next_offsets: dict[tuple[str, int], int] = {}
        for msg in messages:
            if msg.error():
                log.warning("Kafka consumer: %s", msg.error())
                continue
            name, partition, offset = position(msg)
            topic = self.topics[name]
            next_offsets[(name, partition)] = offset + 1
            MESSAGES_CONSUMED.labels(topic.name).inc()
            if msg.value() is None:
                continue  # a tombstone: an upsert topic's transient delete, the next record for the key follows
            try:
                doc = decode_json(msg.value())
                point = to_point(topic, doc)
                if point is None:
                    if not is_marker(topic, doc):
                        EMPTY_RECORDS.labels(topic.name).inc()
                        log.debug("skipped %s: no field to store (every value null)", where(msg))
                    continue
                if CONVERSIONS[topic][0] == "aggregate" and self._versions.supersedes(doc):
                    SUPERSEDED.inc()
                    continue
                points.append(point)
            except (DecodeError, ValueError) as exc:
                # Skipped, not lost: the message stays in Kafka at this offset.
                INVALID_MESSAGES.labels(topic.name).inc()
                log.error("skipped %s: %s", where(msg), exc)
        return points, [TopicPartition(t, p, o) for (t, p), o in next_offsets.items()]

    def write(self, points: list[Point], stop: threading.Event) -> bool:
        """Write until InfluxDB accepts (retrying with backoff); False if `stop` came first."""
        delay = self.retry_base_s
        while True:
            started = time.monotonic()
            try:
                try:
                    self._write_api.write(self.bucket, "-", points)
                except ApiException as exc:
                    if exc.status != 400:
                        raise
                    # Some point is malformed (e.g. a field type conflict): write one by one, skip the bad.
                    log.error("InfluxDB refused a batch of %d points (%s); writing them one by one", len(points), _body(exc))
                    self._write_each(points)
                else:
                    POINTS_WRITTEN.inc(len(points))
                WRITE_LATENCY.observe(time.monotonic() - started)
                return True
            except (ApiException, HTTPError, OSError) as exc:
                WRITE_FAILURES.inc()
                log.warning("InfluxDB write of %d points failed, retrying in %.1f s: %s", len(points), delay, _body(exc))
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self.retry_max_s)

    def _write_each(self, points: list[Point]) -> None:
        for point in points:
            try:
                self._write_api.write(self.bucket, "-", point)
                POINTS_WRITTEN.inc()
            except ApiException as exc:
                if exc.status != 400:
                    raise
                POINTS_REJECTED.inc()
                log.error("InfluxDB rejected %s: %s", point.to_line_protocol(), _body(exc))


def _commit(consumer: Consumer, offsets: list[TopicPartition]) -> None:
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        # Typically a rebalance took the partitions away; their new owner rewrites the
        # same points, which is harmless (upserts).
        log.warning("commit of %s failed: %s", offsets, exc)


def _body(exc: Exception) -> str:
    """The useful part of an influxdb-client error (its HTTP body when there is one)."""
    body = getattr(exc, "body", None)
    return f"HTTP {getattr(exc, 'status', '?')} {body!r}" if body else f"{type(exc).__name__}: {exc}"
