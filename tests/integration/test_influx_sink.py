"""The InfluxDB sink against real Kafka and InfluxDB 1.8 (v2-compatible write and Flux query APIs)."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import AbstractContextManager
from typing import Any

import pytest
from confluent_kafka import Producer
from influxdb_client import InfluxDBClient
from prometheus_client import REGISTRY

from connectors.influx_sink import InfluxSink
from connectors.kafka_io import committed_offsets, encode_json, producer_config
from jointwatch.settings import Settings
from schemas.topics import ALERTS, READINGS_ALIGNED, READINGS_HOURLY, READINGS_REVISIONS, STATION_MINUTES, Topic, namespaced
from tests.integration import background
from tests.samples import sample_alert

pytestmark = pytest.mark.integration

MINUTE = 60_000


@pytest.fixture()
def settings(stack: Any) -> Settings:
    return stack.isolated()


def running(sink: InfluxSink) -> AbstractContextManager[threading.Event]:
    return background.running(sink.run, "sink-under-test")


def produce(settings: Settings, topic: Topic, docs: list[Any]) -> None:
    """Each doc as a message: bytes as they are, None as a tombstone, anything else as JSON."""
    producer = Producer(producer_config(settings.kafka_bootstrap))
    for doc in docs:
        value = doc if doc is None or isinstance(doc, bytes) else encode_json(doc)
        producer.produce(namespaced(topic, settings.namespace), key=b"k", value=value)
    assert producer.flush(10) == 0


def committed(settings: Settings, group_id: str) -> dict[str, int]:
    return committed_offsets(settings.kafka_bootstrap, group_id, [READINGS_ALIGNED, READINGS_HOURLY, ALERTS, READINGS_REVISIONS], settings.namespace)


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def aggregate(station: str, window: str, end: int, mean: float, **over: Any) -> dict[str, Any]:
    span = MINUTE if window == "1m" else 60 * MINUTE
    doc = {
        "schema": "jw.aggregate.v3", "station_id": station, "region": "north", "medium": "air", "parameter": "pm25",
        "unit": "ug/m3", "window": window, "window_start": end - span, "window_end": end, "mean": mean,
        "min": mean - 1, "max": mean + 1, "count": 4, "duplicates": 0, "clock_corrected": 0, "minutes": 1 if window == "1m" else 58,
        "expected": 1.0 if window == "1m" else 60.0, "completeness": 1.0 if window == "1m" else 58 / 60, "version": 1,
    }
    doc.update(over)
    return doc


def alert(station: str, end: int, tier: str, previous: str, threshold: float | None) -> dict[str, Any]:
    return dict(sample_alert(
        alert_id=f"a-{uuid.uuid4().hex[:8]}", subject=station, station_id=station, tier=tier, previous_tier=previous,
        action="escalate" if tier == "red" else "clear", value=160.0, threshold=threshold, window_end=end, rule_version=2,
    ))


def query(settings: Settings, token: str, flux: str) -> list[dict[str, Any]]:
    with InfluxDBClient(url=settings.influx_url, token=token, org="-") as client:
        return [record.values for table in client.query_api().query(flux, org="-") for record in table.records]


def rows(settings: Settings, token: str, measurement: str, station: str, tag: str = "station_id") -> list[dict[str, Any]]:
    return query(settings, token, f"""
        from(bucket: "{settings.influx_db}/autogen")
          |> range(start: -2d)
          |> filter(fn: (r) => r._measurement == "{measurement}" and r.{tag} == "{station}")
          |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    """)


def test_aggregates_and_alerts_are_written_then_committed(stack: Any, settings: Settings) -> None:
    station = f"x-{uuid.uuid4().hex[:8]}"  # a series of its own in the shared database
    end = (int(time.time() * 1000) // MINUTE) * MINUTE - 10 * MINUTE
    minutes = [aggregate(station, "1m", end - i * MINUTE, 30.0 + i) for i in range(5)]
    hourly = [aggregate(station, "1h-rolling", end, 33.5, count=240)]
    alerts = [alert(station, end - MINUTE, "red", "yellow", 150.0), alert(station, end, "green", "red", None)]
    invalid_before = REGISTRY.get_sample_value("jw_sink_invalid_messages_total", {"topic": READINGS_ALIGNED.name}) or 0
    produce(settings, READINGS_ALIGNED, [*minutes, b"{broken", {**minutes[0], "mean": "high"}])
    produce(settings, READINGS_HOURLY, hourly)
    produce(settings, ALERTS, alerts)
    group = f"jw-sink-test-{uuid.uuid4().hex[:8]}"
    token = stack.secrets.influx_token

    with running(InfluxSink.create(settings, stack.secrets, group_id=group, batch_size=3)):
        wait_until(lambda: committed(settings, group) == {READINGS_ALIGNED.name: 7, READINGS_HOURLY.name: 1, ALERTS.name: 2,
                                                          READINGS_REVISIONS.name: 0}, 60, "commits")

    aggs = rows(settings, token, "aggregate", station)
    one_minute = sorted((r for r in aggs if r["window"] == "1m"), key=lambda r: r["_time"])
    assert [r["mean"] for r in one_minute] == [34.0, 33.0, 32.0, 31.0, 30.0]
    assert [int(r["_time"].timestamp() * 1000) for r in one_minute] == [end - i * MINUTE for i in range(4, -1, -1)]
    assert one_minute[0]["count"] == 4 and isinstance(one_minute[0]["count"], int)
    (hour,) = [r for r in aggs if r["window"] == "1h-rolling"]
    assert (hour["mean"], hour["min"], hour["max"], hour["count"], hour["minutes"]) == (33.5, 32.5, 34.5, 240, 58)
    assert hour["completeness"] == pytest.approx(58 / 60)
    assert (hour["region"], hour["medium"], hour["parameter"]) == ("north", "air", "pm25")

    stored = sorted(rows(settings, token, "alert", station, tag="subject"), key=lambda r: r["_time"])
    assert [(r["tier"], r["previous_tier"], r["alert_id"]) for r in stored] == [(a["tier"], a["previous_tier"], a["alert_id"]) for a in alerts]
    assert stored[0]["threshold"] == 150.0 and stored[0]["value"] == 160.0 and stored[0]["origin_region"] == "north"
    assert stored[1].get("threshold") is None and stored[1]["rule_id"] == alerts[1]["rule_id"] and stored[1]["action"] == "clear"

    invalid_after = REGISTRY.get_sample_value("jw_sink_invalid_messages_total", {"topic": READINGS_ALIGNED.name})
    assert invalid_after == invalid_before + 2

    # A late reading revised minute 1: the revision (a tombstone first, as the job's upsert sink
    # may write) replaces the first result in place; the minute is still one point.
    produce(settings, READINGS_REVISIONS, [None, {**minutes[1], "mean": 99.0, "count": 5, "version": 2}])
    with running(InfluxSink.create(settings, stack.secrets, group_id=group, batch_size=3)):
        wait_until(lambda: committed(settings, group)[READINGS_REVISIONS.name] == 2, 60, "revision commits")
    revised = sorted((r for r in rows(settings, token, "aggregate", station) if r["window"] == "1m"), key=lambda r: r["_time"])
    assert [(r["mean"], r["version"]) for r in revised] == [(34.0, 1), (33.0, 1), (32.0, 1), (99.0, 2), (30.0, 1)]
    assert revised[3]["count"] == 5


def test_nothing_is_committed_while_influx_refuses_writes(stack: Any, settings: Settings) -> None:
    station = f"x-{uuid.uuid4().hex[:8]}"
    end = (int(time.time() * 1000) // MINUTE) * MINUTE
    produce(settings, READINGS_HOURLY, [aggregate(station, "1h-rolling", end, 12.0)])
    group = f"jw-sink-test-{uuid.uuid4().hex[:8]}"
    failures_before = REGISTRY.get_sample_value("jw_sink_write_failures_total") or 0

    # A database that does not exist: InfluxDB answers 404 to every write.
    broken = settings.with_(influx_db=f"missing_{uuid.uuid4().hex[:8]}")
    with running(InfluxSink.create(broken, stack.secrets, group_id=group, retry_base_s=0.2)):
        wait_until(lambda: (REGISTRY.get_sample_value("jw_sink_write_failures_total") or 0) >= failures_before + 2, 30, "write retries")
        assert committed(settings, group) == {READINGS_ALIGNED.name: 0, READINGS_HOURLY.name: 0, ALERTS.name: 0, READINGS_REVISIONS.name: 0}

    # The same group against the real database picks the uncommitted message up again.
    with running(InfluxSink.create(settings, stack.secrets, group_id=group)):
        wait_until(lambda: committed(settings, group)[READINGS_HOURLY.name] == 1, 60, "commit after recovery")
    assert [r["mean"] for r in rows(settings, stack.secrets.influx_token, "aggregate", station)] == [12.0]


def station_minute(station: str, end: int, **over: Any) -> dict[str, Any]:
    """A jw.station_minute.v1 record as the job writes it: PM2.5 calibrated by a registry model, NO2 measured
    by an unlisted analyser (calibrated = raw, no model), every other index parameter without a reading."""
    doc: dict[str, Any] = {
        "schema": "jw.station_minute.v1", "station_id": station, "region": "north", "medium": "air",
        "window_start": end - MINUTE, "window_end": end, "rh": 71.0, "temp": 4.5,
        "pm25_raw": 48.25, "pm25": 41.5, "pm25_model": "colocation-2026-09@2", "pm25_qc": 8,
        "no2_raw": 30.0, "no2": 30.0, "no2_model": None, "no2_qc": 0,
    }
    for p in ("pm10", "so2", "co", "o3", "ph", "do", "codmn", "nh3n", "tp"):
        doc.update({f"{p}_raw": None, p: None, f"{p}_model": None, f"{p}_qc": None})
    doc.update(over)
    return doc


def test_station_minutes_are_stored_with_calibration_and_provenance(stack: Any, settings: Settings) -> None:
    station = f"x-{uuid.uuid4().hex[:8]}"
    end = (int(time.time() * 1000) // MINUTE) * MINUTE - 10 * MINUTE
    calibrated = station_minute(station, end - MINUTE)
    missing = station_minute(station, end, pm25=None, pm25_model=None, pm25_qc=32, rh=None)  # calibration missing: raw and flag only
    empty = station_minute(station, end + MINUTE, rh=None, temp=None, pm25_raw=None, pm25=None, pm25_model=None, pm25_qc=None,
                           no2_raw=None, no2=None, no2_qc=None)
    topic = {"topic": STATION_MINUTES.name}
    invalid_before = REGISTRY.get_sample_value("jw_sink_invalid_messages_total", topic) or 0
    empty_before = REGISTRY.get_sample_value("jw_sink_empty_records_total", topic) or 0
    produce(settings, STATION_MINUTES, [calibrated, b"{broken", {**missing, "pm25_qc": "high"}, missing, empty])
    group = f"jw-sink-test-{uuid.uuid4().hex[:8]}"

    with running(InfluxSink.create(settings, stack.secrets, group_id=group)):
        wait_until(lambda: committed_offsets(settings.kafka_bootstrap, group, [STATION_MINUTES], settings.namespace) == {STATION_MINUTES.name: 5},
                   60, "commits")

    stored = sorted(rows(settings, stack.secrets.influx_token, "station_minute", station), key=lambda r: r["_time"])
    assert [int(r["_time"].timestamp() * 1000) for r in stored] == [end - MINUTE, end]  # at window_end; the empty minute is not stored
    first, second = stored
    assert (first["region"], first["medium"]) == ("north", "air")
    assert (first["pm25"], first["pm25_raw"], first["pm25_qc"], first["pm25_model"]) == (41.5, 48.25, 8, "colocation-2026-09@2")
    assert isinstance(first["pm25_qc"], int) and isinstance(first["pm25"], float)
    assert (first["no2"], first["no2_raw"], first["no2_qc"], first.get("no2_model")) == (30.0, 30.0, 0, None)
    assert (first["rh"], first["temp"]) == (71.0, 4.5)
    assert (second.get("pm25"), second["pm25_raw"], second["pm25_qc"], second.get("pm25_model")) == (None, 48.25, 32, None)
    assert (second.get("rh"), second["temp"]) == (None, 4.5)
    assert not any(k.startswith(("pm10", "so2", "o3")) for r in stored for k in r)  # parameters without data have no fields

    # The model is a field, not a tag: the series is the station's (station_id, region, medium) whatever the model.
    (model,) = query(settings, stack.secrets.influx_token, f"""
        from(bucket: "{settings.influx_db}/autogen")
          |> range(start: -2d)
          |> filter(fn: (r) => r._measurement == "station_minute" and r.station_id == "{station}" and r._field == "pm25_model")
    """)
    assert model["_value"] == "colocation-2026-09@2"
    assert {k for k in model if not k.startswith("_") and k not in ("result", "table")} == {"station_id", "region", "medium"}

    assert REGISTRY.get_sample_value("jw_sink_invalid_messages_total", topic) == invalid_before + 2
    assert REGISTRY.get_sample_value("jw_sink_empty_records_total", topic) == empty_before + 1
