"""Typed Python views of the JSON Schemas in this folder, and their validators.

The JSON Schema files are the contract; the TypedDicts mirror them for type
checking and tests/unit/test_schemas.py checks the two agree field by field.
(No `from __future__ import annotations` here: it hides Required[] from TypedDict in 3.11.)
"""


import json
from functools import cache
from pathlib import Path
from typing import Any, Literal, Required, TypedDict

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent
Tier = Literal["green", "yellow", "red"]
Status = Literal["N", "F", "M", "S", "D", "C", "T", "B"]


class DevicePayload(TypedDict, total=False):
    station_id: Required[str]
    seq: int
    ts: Required[str | float]
    gw_ts: str
    values: Required[dict[str, float]]
    status: dict[str, Status]


class Reading(TypedDict):
    schema: Literal["jw.reading.v2"]
    reading_id: str
    station_id: str
    region: str
    medium: Literal["air", "water"]
    parameter: str
    value: float
    unit: str
    event_time: int
    received_at: int
    device_time: str
    time_basis: Literal["iso8601", "epoch_s", "epoch_ms", "local"]
    clock_corrected: bool
    clock_offset_ms: int
    seq: int | None
    status: Status


class DeviceHealth(TypedDict):
    schema: Literal["jw.device_health.v1"]
    event_id: str
    station_id: str
    region: str
    kind: Literal["clock_skew", "clock_jump", "clock_ok"]
    corrected: bool
    offset_ms: int
    applied_offset_ms: int
    previous_applied_offset_ms: int
    samples: int
    reference_time: int
    reference: Literal["gateway", "bridge"]
    device_time: int
    tolerance_ms: int
    reason: str


class ClockStateDetail(TypedDict):
    recent: list[int]
    run: list[list[int]]
    established: bool
    correcting: bool
    applied: int
    reported: int
    seen: list[list[int]]


class ClockState(TypedDict):
    schema: Literal["jw.clock_state.v1"]
    station_id: str
    saved_at: int
    state: ClockStateDetail


class Aggregate(TypedDict):
    schema: Literal["jw.aggregate.v3"]
    station_id: str
    region: str
    medium: Literal["air", "water"]
    parameter: str
    unit: str
    window: Literal["1m", "1h-rolling"]
    window_start: int
    window_end: int
    mean: float
    min: float
    max: float
    count: int
    duplicates: int
    clock_corrected: int
    minutes: int
    expected: float
    completeness: float
    version: int


class LateReading(TypedDict):
    schema: Literal["jw.late.v2"]
    reason: Literal["beyond_allowed_lateness"]
    reading_id: str
    station_id: str
    parameter: str
    value: float
    event_time: int
    received_at: int
    device_time: str
    watermark: int
    late_by_ms: int
    allowed_lateness_ms: int


class DeadLetter(TypedDict):
    schema: Literal["jw.deadletter.v1"]
    reason: str
    detail: str
    mqtt_topic: str
    received_at: int
    payload_encoding: Literal["utf-8", "base64"]
    payload: str


class StationHour(TypedDict):
    """Fixed fields; plus <parameter>_mean (float | None) and <parameter>_minutes (int) per index parameter."""

    schema: Literal["jw.station_hour.v2"]
    station_id: str
    region: str
    medium: Literal["air", "water"]
    window_start: int
    window_end: int
    wind_speed_mean: float | None
    wind_speed_minutes: int
    wind_dir_sin_mean: float | None
    wind_dir_cos_mean: float | None
    wind_dir_minutes: int


class StationMinute(TypedDict):
    """Fixed fields; plus per index parameter <p>_raw, <p> (float | None), <p>_model (str | None), <p>_qc (int | None)."""

    schema: Literal["jw.station_minute.v1"]
    station_id: str
    region: str
    medium: Literal["air", "water"]
    window_start: int
    window_end: int
    rh: float | None
    temp: float | None


class StationClockHour(TypedDict):
    """Fixed fields; plus per index parameter <p>_mean, <p>_minutes, <p>_24h_mean (float | None), <p>_24h_hours."""

    schema: Literal["jw.station_clock_hour.v1"]
    station_id: str
    region: str
    medium: Literal["air", "water"]
    window_start: int
    window_end: int
    o3_8h_mean: float | None
    o3_8h_hours: int
    o3_1h_max: float | None
    o3_8h_max: float | None
    o3_8h_max_means: int


Averaging = Literal["1h", "24h", "8h", "1h-max", "8h-max"]


class IndexInput(TypedDict):
    parameter: str
    averaging: Averaging
    mean: float
    count: int
    count_unit: Literal["minutes", "hours", "8h-means"]
    completeness: float
    valid: bool


class Wind(TypedDict):
    from_deg: float
    speed_ms: float | None
    steadiness: float
    minutes: int


IndexKind = Literal["aqi_realtime", "water_class_realtime", "aqi_hourly", "water_class", "aqi_daily"]


class Index(TypedDict):
    schema: Literal["jw.index.v2"]
    index_id: str
    station_id: str
    region: str
    medium: Literal["air", "water"]
    index: IndexKind
    standard_id: str
    window_start: int
    window_end: int
    value: int | None
    label: str | None
    primary: list[str]
    insufficient_data: bool
    reason: str | None
    inputs: list[IndexInput]
    detail: dict[str, Any] | None
    wind: Wind | None


class Alert(TypedDict):
    schema: Literal["jw.alert.v2"]
    alert_id: str
    episode_id: str
    action: Literal["raise", "escalate", "deescalate", "clear", "reattribute"]
    scope: Literal["station", "region"]
    subject: str
    station_id: str | None
    region: str
    origin_region: str
    affected_regions: list[str]
    kind: Literal["air", "water", "health"]
    indicator: str
    tier: Tier
    previous_tier: Tier
    value: float | None
    threshold: float | None
    reason: str
    window_start: int
    window_end: int
    condition_since: int
    completeness: float
    standard: str
    inputs: dict[str, Any]
    rule_id: str
    rule_set_id: str
    rule_version: int


class TierRulesUpdate(TypedDict):
    schema: Literal["jw.tier_rules_update.v1"]
    rules: dict[str, Any]
    effective_from: int | None
    published_by: str


class ApportionmentProgress(TypedDict):
    schema: Literal["jw.apportionment_progress.v1"]
    emitted_through: int
    stage: str


def progress_marker(emitted_through: int, stage: str) -> ApportionmentProgress:
    """The apportionment stage's marker: every window up to emitted_through is published."""
    return {"schema": "jw.apportionment_progress.v1", "emitted_through": emitted_through, "stage": stage}


def is_progress(doc: Any) -> bool:
    """A progress marker on jw.apportionment, not a record: readers of records skip it."""
    return isinstance(doc, dict) and doc.get("schema") == "jw.apportionment_progress.v1"


SCHEMA_FILES: dict[str, str] = {
    "device_payload": "device_payload.v1.schema.json",
    "reading": "reading.v2.schema.json",
    "device_health": "device_health.v1.schema.json",
    "clock_state": "clock_state.v1.schema.json",
    "aggregate": "aggregate.v3.schema.json",
    "late_reading": "late_reading.v2.schema.json",
    "dead_letter": "dead_letter.v1.schema.json",
    "index": "index.v2.schema.json",
    "station_hour": "station_hour.v2.schema.json",
    "station_clock_hour": "station_clock_hour.v1.schema.json",
    "station_minute": "station_minute.v1.schema.json",
    "alert": "alert.v2.schema.json",
    "tier_rules_update": "tier_rules_update.v1.schema.json",
    "apportionment_progress": "apportionment_progress.v1.schema.json",
    # typed in schemas/calibration.py and schemas/apportionment.py (with their nested objects)
    "calibration_model": "calibration_model.v1.schema.json",
    "calibration_proposal": "calibration_proposal.v1.schema.json",
    "apportionment": "apportionment.v1.schema.json",
}
TYPED: dict[str, type] = {
    "device_payload": DevicePayload,
    "reading": Reading,
    "device_health": DeviceHealth,
    "clock_state": ClockState,
    "aggregate": Aggregate,
    "late_reading": LateReading,
    "dead_letter": DeadLetter,
    "index": Index,
    "station_hour": StationHour,
    "station_clock_hour": StationClockHour,
    "station_minute": StationMinute,
    "alert": Alert,
    "tier_rules_update": TierRulesUpdate,
    "apportionment_progress": ApportionmentProgress,
}


@cache
def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / SCHEMA_FILES[name]).read_text())


@cache
def validator(name: str) -> Draft202012Validator:
    # Every schema registered by its $id, so one may refer to another's definitions.
    resources = Registry().with_resources((schema(n)["$id"], Resource.from_contents(schema(n))) for n in SCHEMA_FILES)
    return Draft202012Validator(schema(name), registry=resources)


def validation_errors(name: str, doc: Any) -> list[str]:
    """Every violation of the named schema, each as 'path: message' (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]
