"""Device payload -> readings: validation and normalisation, pure (no I/O).

The bridge calls `normalize_message` once per MQTT message. The checks mirror
schemas/device_payload.v1.schema.json by hand because jsonschema costs ~100 µs a
message on this hot path; tests/unit/test_normalize.py checks both agree.
A message is the unit of acceptance: any violation dead-letters the whole
message (with every reason found), so nothing is half-ingested and the
original bytes stay replayable from the dead-letter topic.

With a `ClockSkew` (connectors/clock_skew.py), each accepted message is also one sample
of its device's clock offset against the reference time (the payload's gw_ts, else the
bridge's receive time), and event times are corrected per device. Only accepted messages
reach the estimator, so garbage never moves a device's clock estimate.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from connectors.clock_skew import ClockSkew
from schemas.models import DeviceHealth, Reading
from schemas.network import ID_PATTERN, Network
from schemas.parameters import PARAMETERS

MAX_PAYLOAD_BYTES = 8192
STATUS_CODES = frozenset("NFMSDCTB")
_TOPIC = re.compile(r"^jw/v1/([^/]+)/([^/]+)/up$")
_LOCAL_FORMS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y%m%d%H%M%S")  # zone-less; the last is HJ 212 DataTime
_EARLIEST_MS = 946_684_800_000  # 2000-01-01: anything earlier is a device with no clock set
_MAX_AHEAD_MS = 2 * 86_400_000  # beyond two days ahead of receipt no skew correction can explain it
_ALLOWED_KEYS = frozenset({"station_id", "seq", "ts", "gw_ts", "values", "status"})


class Rejected(ValueError):
    """A message the bridge dead-letters; `code` is a stable metric label, `detail` says exactly why."""

    def __init__(self, code: str, detail: str) -> None:
        self.code, self.detail = code, detail
        super().__init__(f"{code}: {detail}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def parse_device_time(ts: Any, zone: str, reference_ms: int | None = None) -> tuple[int, str]:
    """Device time -> (UTC epoch ms, basis). Zone-less local times use the station's zone; where
    daylight saving makes one ambiguous (the repeated hour in autumn) or skipped (the missing hour
    in spring, from a clock that kept standard time), of its two readings (fold 0 and 1) the one
    nearest `reference_ms` (the gateway's or the bridge's receive time) is taken, else fold 0."""
    if _is_number(ts):
        if not math.isfinite(ts) or ts < 0:
            raise Rejected("bad_timestamp", f"ts {ts!r} is not a valid epoch")
        # Epoch seconds stay below 1e11 until the year 5138; milliseconds are above it since 1973.
        return (int(round(ts)), "epoch_ms") if ts >= 1e11 else (int(round(ts * 1000)), "epoch_s")
    if not isinstance(ts, str):
        raise Rejected("schema_violation", f"ts must be a string or a number, got {type(ts).__name__}")
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        dt = None
    if dt is not None and dt.tzinfo is not None:
        return int(dt.timestamp() * 1000), "iso8601"
    for form in _LOCAL_FORMS:
        try:
            local = datetime.strptime(ts, form)
            break
        except ValueError:
            continue
    else:
        raise Rejected("bad_timestamp", f"ts {ts!r} is neither ISO-8601, epoch, 'YYYY-MM-DD HH:MM:SS' nor HJ 212 'YYYYMMDDHHMMSS'")
    tz = ZoneInfo(zone)
    first, second = (int(local.replace(tzinfo=tz, fold=f).timestamp() * 1000) for f in (0, 1))
    if first == second or reference_ms is None:
        return first, "local"
    # Readings are sent as they are taken (or kept with the gateway's receive time), so the
    # reading an hour away from the reference is the wrong one; ties keep fold 0.
    return min((first, second), key=lambda t: abs(t - reference_ms)), "local"


def _check_shape(doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        return [f"<root>: must be an object, got {type(doc).__name__}"]
    errors = [f"{k}: unexpected property" for k in doc if k not in _ALLOWED_KEYS]
    errors += [f"{k}: is required" for k in ("station_id", "ts", "values") if k not in doc]
    sid = doc.get("station_id")
    if "station_id" in doc and not (isinstance(sid, str) and ID_PATTERN.match(sid)):
        errors.append(f"station_id: {sid!r} must match {ID_PATTERN.pattern}")
    if "seq" in doc and not (isinstance(doc["seq"], int) and not isinstance(doc["seq"], bool) and doc["seq"] >= 0):
        errors.append(f"seq: must be a non-negative integer, got {doc['seq']!r}")
    ts = doc.get("ts")
    if "ts" in doc and not ((isinstance(ts, str) and 8 <= len(ts) <= 40) or (_is_number(ts) and ts >= 0)):
        errors.append(f"ts: must be a string of 8..40 characters or a non-negative number, got {ts!r}")
    if "gw_ts" in doc and not (isinstance(doc["gw_ts"], str) and len(doc["gw_ts"]) <= 40):
        errors.append("gw_ts: must be a string of at most 40 characters")
    values = doc.get("values")
    if "values" in doc:
        if not isinstance(values, dict) or not 1 <= len(values) <= 32:
            errors.append("values: must be an object with 1..32 entries")
        else:
            errors += [f"values/{k}: must be a number, got {v!r}" for k, v in values.items() if not _is_number(v)]
    status = doc.get("status")
    if "status" in doc:
        if not isinstance(status, dict):
            errors.append("status: must be an object")
        else:
            errors += [f"status/{k}: {v!r} is not one of {sorted(STATUS_CODES)}" for k, v in status.items() if v not in STATUS_CODES]
    return errors


def normalize(topic: str, payload: bytes, network: Network, received_at_ms: int, clocks: ClockSkew | None = None) -> list[Reading]:
    """Validate one MQTT message and explode it into readings, or raise Rejected (see normalize_message)."""
    return normalize_message(topic, payload, network, received_at_ms, clocks)[0]


def normalize_message(
    topic: str, payload: bytes, network: Network, received_at_ms: int, clocks: ClockSkew | None = None
) -> tuple[list[Reading], DeviceHealth | None]:
    """Validate one MQTT message and explode it into readings, or raise Rejected; with `clocks`,
    correct the device's clock skew and return the device-health event it caused, if any.
    Without `clocks` nothing is corrected (clock_corrected false, clock_offset_ms 0)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise Rejected("oversized", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    m = _TOPIC.match(topic)
    if m is None:
        raise Rejected("bad_topic", f"topic {topic!r} is not jw/v1/<region>/<station>/up")
    topic_region, topic_station = m.groups()
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected("malformed_json", str(exc)) from None
    errors = _check_shape(doc)
    if errors:
        raise Rejected("schema_violation", "; ".join(errors))
    sid = doc["station_id"]
    station = network.stations.get(sid)
    if station is None:
        raise Rejected("unknown_station", f"station {sid!r} is not in the registry {network.source}")
    if sid != topic_station or station.region != topic_region:
        raise Rejected("station_mismatch", f"payload of {sid} (region {station.region}) on topic {topic!r}")
    problems = []
    for name, value in doc["values"].items():
        param = PARAMETERS.get(name)
        if param is None or name not in station.parameters:
            problems.append(f"{name}: not measured by {sid} (measures {', '.join(station.parameters)})")
        elif not (math.isfinite(value) and param.low <= value <= param.high):
            problems.append(f"{name}: {value!r} {param.unit} outside the physical range [{param.low}, {param.high}]")
    status = doc.get("status", {})
    problems += [f"status/{name}: no such value in this message" for name in status if name not in doc["values"]]
    if problems:
        code = "out_of_range" if all("physical range" in p for p in problems) else "unknown_parameter"
        raise Rejected(code, "; ".join(problems))
    received = received_at_ms
    if "gw_ts" in doc:
        received, gw_basis = parse_device_time(doc["gw_ts"], station.timezone)
        if gw_basis != "iso8601":
            raise Rejected("bad_timestamp", f"gw_ts {doc['gw_ts']!r} must be ISO-8601 with a zone")
    device_ms, basis = parse_device_time(doc["ts"], station.timezone, received)
    if not _EARLIEST_MS <= device_ms <= received + _MAX_AHEAD_MS:
        iso = datetime.fromtimestamp(device_ms / 1000, timezone.utc).isoformat()
        raise Rejected("bad_timestamp", f"ts {doc['ts']!r} = {iso} is implausible (before 2000 or > 2 days after receipt)")
    health = None
    if clocks is None:
        event_ms, offset = device_ms, 0
    else:
        event_ms, offset, health = clocks.observe(sid, station.region, device_ms, received, "gateway" if "gw_ts" in doc else "bridge")
    device_time = doc["ts"] if isinstance(doc["ts"], str) else repr(doc["ts"])
    seq = doc.get("seq")
    # reading_id uses the device's own time, not the corrected one: the correction depends on the
    # bridge's estimate when the copy arrives (it moves with new samples, restarts with the bridge),
    # while a copy re-sent after a reconnect carries the same device time. (A clock set back can
    # repeat device times, but then the corrected event times, and so the windows, differ.)
    readings: list[Reading] = [
        {
            "schema": "jw.reading.v2",
            "reading_id": f"{sid}/{name}/{device_ms}",
            "station_id": sid,
            "region": station.region,
            "medium": station.medium,
            "parameter": name,
            "value": float(value),
            "unit": PARAMETERS[name].unit,
            "event_time": event_ms,
            "received_at": received,
            "device_time": device_time,
            "time_basis": basis,  # type: ignore[typeddict-item]
            "clock_corrected": offset != 0,
            "clock_offset_ms": offset,
            "seq": seq,
            "status": status.get(name, "N"),
        }
        for name, value in doc["values"].items()
    ]
    return readings, health
