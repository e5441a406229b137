"""Kafka topic names, their keys and partition counts: the one place they are defined."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    key: str  # which message field is the Kafka key
    partitions: int
    compacted: bool = False
    config: tuple[tuple[str, str], ...] = ()  # topic-level settings beyond the broker defaults


READINGS_RAW = Topic("jw.readings.raw", key="station_id", partitions=4)
READINGS_DEAD = Topic("jw.readings.dead", key="topic", partitions=1)
READINGS_LATE = Topic("jw.readings.late", key="station_id", partitions=1)
READINGS_ALIGNED = Topic("jw.readings.aligned", key="station_id", partitions=4)
READINGS_HOURLY = Topic("jw.readings.rolling1h", key="station_id", partitions=4)
# One-minute windows revised by late readings (version >= 2), written by Flink's upsert-kafka
# sink: the key is the JSON of (station_id, parameter, window_start), the latest record per key
# is the current one, so compaction keeps exactly that. Rare, hence one partition.
READINGS_REVISIONS = Topic("jw.readings.revisions", key="station_id,parameter,window_start", partitions=1, compacted=True)
STATION_HOURS = Topic("jw.readings.station1h", key="station_id", partitions=2)
# Calibrated, quality-controlled station minutes with provenance (jw.station_minute.v1).
STATION_MINUTES = Topic("jw.readings.station1m", key="station_id", partitions=2)
STATION_CLOCK_HOURS = Topic("jw.readings.station_clock1h", key="station_id", partitions=2)  # one per station and clock hour
INDICES = Topic("jw.indices", key="station_id", partitions=2)
ALERTS = Topic("jw.alerts", key="region", partitions=2)
ALERTS_UNDELIVERABLE = Topic("jw.alerts.undeliverable", key="region", partitions=1)
# The alert stage's snapshots (state machine, buffer, input offsets), written in the same
# Kafka transaction as the alerts they account for; compacted, the latest per stage survives.
STATE_MAX_BYTES = 64 * 1024 * 1024  # a snapshot during a long catch-up can exceed the 1 MiB default
ALERT_STATE = Topic(
    "jw.alerts.state", key="group_id", partitions=1, compacted=True,
    # small segments, so compaction (which skips the active segment) keeps a restart's read short
    config=(("max.message.bytes", str(STATE_MAX_BYTES)), ("segment.ms", "600000"), ("min.cleanable.dirty.ratio", "0.1")),
)
TIER_RULES = Topic("jw.control.tier-rules", key="rule_set_id", partitions=1, compacted=True)  # rules updates
# Device clock events from the bridge (jw.device_health.v1): rare, so one partition; a log, not compacted.
DEVICE_HEALTH = Topic("jw.devices.health", key="station_id", partitions=1)
# The bridge's per-device clock estimator state (jw.clock_state.v1), restored when a bridge starts.
CLOCK_STATE = Topic("jw.devices.clock-state", key="station_id", partitions=1, compacted=True)
# Source apportionment (jw.apportionment.v1): one record per receptor or region, window and pollutant.
APPORTIONMENT = Topic("jw.apportionment", key="region", partitions=2)
# Calibration registry (jw.calibration_model.v1): each sensor's whole version history, latest per key kept.
CALIBRATION = Topic("jw.control.calibration", key="sensor", partitions=1, compacted=True)
CALIBRATION_PROPOSALS = Topic("jw.calibration.proposals", key="sensor", partitions=1)  # drift proposals, a log

ALL_TOPICS: tuple[Topic, ...] = (
    READINGS_RAW,
    READINGS_DEAD,
    READINGS_LATE,
    READINGS_ALIGNED,
    READINGS_REVISIONS,
    READINGS_HOURLY,
    STATION_HOURS,
    STATION_MINUTES,
    STATION_CLOCK_HOURS,
    INDICES,
    ALERTS,
    ALERTS_UNDELIVERABLE,
    ALERT_STATE,
    TIER_RULES,
    DEVICE_HEALTH,
    CLOCK_STATE,
    APPORTIONMENT,
    CALIBRATION,
    CALIBRATION_PROPOSALS,
)


def namespaced(topic: Topic, namespace: str = "") -> str:
    """Topic name inside an isolated namespace (replays, tests); '' is production."""
    return f"{namespace}.{topic.name}" if namespace else topic.name


# MQTT topics. Devices publish under their own station; the ACL enforces it.
MQTT_UP = "jw/v1/{region}/{station_id}/up"
MQTT_UP_SUBSCRIPTION = "jw/v1/+/+/up"
MQTT_ALERTS = "jw/v1/alerts/{region}"
