"""One simulated episode through the whole pipeline, on the real stack:
devices -> Mosquitto -> bridge -> Kafka -> Flink job -> Kafka -> router -> the
lead region's signed webhook and MQTT topic, and -> sink -> InfluxDB (Flux).

Run twice: on the embedded MiniCluster and on a standalone Flink cluster
(JobManager + TaskManager from the PyFlink distribution's scripts, `flink run`).
"""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest
from influxdb_client import InfluxDBClient

from alerts.channels import responder_keys
from alerts.responder import ConsoleSubscriber, ResponderServer
from alerts.routing import load_routing
from connectors.normalize import normalize
from jobs.indices import AQI_POLLUTANTS, WATER_PARAMETERS, station_index
from jobs.tier_rules import load_tier_rules
from jointwatch.services import Services
from jointwatch.settings import REPO_ROOT
from jointwatch.stack.flink import FlinkCluster
from simulator.publisher import publish
from schemas.models import validation_errors
from schemas.topics import INDICES, READINGS_ALIGNED, READINGS_LATE, namespaced
from simulator.scenario import ScenarioConfig, device_messages, faulty_stations
from tests.integration.kafka_read import read_until

pytestmark = [pytest.mark.integration, pytest.mark.flink]

CONFIG = ScenarioConfig(seed=7)
STEPS = 150  # 2.5 simulated hours: the plume turns a north station red after ~1.5 h


def reference_window_mean(network, station: str, parameter: str, start_ms: int, end_ms: int) -> tuple[float, int]:
    """Independent computation from the exact payloads the devices sent (clean-clock station)."""
    values = []
    for topic, payload in device_messages(network, CONFIG, 0, STEPS):
        doc = json.loads(payload)
        if doc["station_id"] != station:
            continue
        ts = doc["ts"]
        ms = int(ts) if isinstance(ts, (int, float)) and ts > 1e11 else int(np.datetime64(ts.rstrip("Z"), "ms").astype(np.int64))
        if start_ms <= ms < end_ms and parameter in doc["values"]:
            values.append(doc["values"][parameter])
    return float(np.mean(values)), len(values)


def assert_index_matches_reference(s, net, alert) -> None:
    def mine(messages) -> list:
        return [d for _, d in messages if d["station_id"] == alert["station_id"] and d["window_end"] == alert["window_end"]]

    found = mine(read_until(s.kafka_bootstrap, [namespaced(INDICES, s.namespace)], lambda m: bool(mine(m)), timeout_s=60))
    assert len(found) == 1, found
    index = found[0]
    station = net.stations[alert["station_id"]]
    kind, standard, items = ("aqi_realtime", "HJ 633", AQI_POLLUTANTS) if station.medium == "air" else ("water_class", "GB 3838", WATER_PARAMETERS)
    assert validation_errors("index", index) == [] and index["index"] == kind and index["standard_id"].startswith(standard)
    used = next(i for i in index["inputs"] if i["parameter"] == alert["parameter"])
    assert used["mean"] == pytest.approx(alert["value"], rel=1e-9) and used["minutes"] == alert["window_minutes"]
    # A red hour is at least "lightly polluted" (AQI > 100), or class V or worse for water.
    assert index["value"] > 100 if kind == "aqi_realtime" else index["value"] >= 5
    if station.id not in faulty_stations(net, CONFIG):
        means = {p: reference_window_mean(net, station.id, p, alert["window_start"], alert["window_end"]) for p in items if p in station.parameters}
        expected = station_index(station, alert["window_start"], alert["window_end"], means)
        assert (index["value"], index["primary"]) == (expected["value"], expected["primary"])


def assert_every_reading_accounted_for(s, net) -> None:
    sent: Counter = Counter()
    for topic, payload in device_messages(net, CONFIG, 0, STEPS):
        for r in normalize(topic, payload, net, CONFIG.start_ms):
            sent[(r["station_id"], r["parameter"], r["event_time"] // 60_000)] += 1
    # Windows up to 15 minutes before the last reading are closed (largest clock skew + out-of-orderness).
    cutoff = max(minute for _, _, minute in sent) - 15
    closed = {k: n for k, n in sent.items() if k[2] < cutoff}
    aligned_topic, late_topic = namespaced(READINGS_ALIGNED, s.namespace), namespaced(READINGS_LATE, s.namespace)

    def tally(messages) -> Counter:
        out: Counter = Counter()
        for topic, d in messages:
            if topic == aligned_topic:
                out[(d["station_id"], d["parameter"], d["window_start"] // 60_000)] += d["count"]
            else:
                assert validation_errors("late_reading", d) == [] and d["late_by_ms"] <= 0
                out[(d["station_id"], d["parameter"], d["event_time"] // 60_000)] += 1
        return out

    def complete(messages) -> bool:
        got = tally(messages)
        return all(got[k] >= n for k, n in closed.items())

    got = tally(read_until(s.kafka_bootstrap, [aligned_topic, late_topic], complete, timeout_s=60))
    assert {k: got[k] for k in closed} == closed


@pytest.mark.parametrize("engine", ["embedded", "cluster"])
def test_episode_alert_reaches_lead_region_and_influxdb(stack, engine: str) -> None:
    s = stack.isolated()
    net = stack.network
    server = ResponderServer({}, port=0).start()
    routing = load_routing(s.routing_file, net.regions, env={**os.environ, "JW_RESPONDER_PORT": str(server.port)})
    server.keys = responder_keys(routing, stack.secrets.webhook_key)
    consoles = {r: ConsoleSubscriber.for_region(s, stack.secrets, r).start() for r in net.regions}
    cluster = FlinkCluster(s) if engine == "cluster" else None
    try:
        with Services(s, stack.secrets, net, routing, with_job=cluster is None) as services:
            if cluster is not None:
                cluster.start()
                job_id = cluster.submit("--startup-mode", "earliest-offset")
            stats = publish(net, CONFIG, secrets=stack.secrets, port=s.mqtt_port, steps=STEPS, rate=3000)
            assert stats.published == stats.acked == STEPS * len(net.stations)

            def red_north(items) -> bool:
                return any(i.alert["tier"] == "red" and i.alert["origin_region"] == "north" for i in items)

            received = server.received.wait_for(red_north, timeout=180)
            assert red_north(received), f"no red alert reached north; services errors: {services.errors}; job alive: {services.job_alive()}"
            if cluster is not None:
                assert cluster.job_status(job_id) == "RUNNING"
            alert = next(i.alert for i in received if i.alert["tier"] == "red" and i.alert["origin_region"] == "north")

            # Both north responders got it as lead, signed (the server verifies), and nobody outside north did.
            north_ids = {r.id for r in routing.regions["north"].responders}
            received = server.received.wait_for(
                lambda items: {i.responder_id for i in items if i.alert["alert_id"] == alert["alert_id"]} >= north_ids, timeout=30
            )
            assert {i.responder_id for i in received if i.alert["alert_id"] == alert["alert_id"]} == north_ids
            assert all(i.alert["delivery"]["role"] == "lead" for i in received if i.alert["alert_id"] == alert["alert_id"])
            north_feed = consoles["north"].messages.wait_for(lambda ms: any(m["alert_id"] == alert["alert_id"] for m in ms), timeout=30)
            assert any(m["alert_id"] == alert["alert_id"] for m in north_feed)
            for region, console in consoles.items():
                assert all(m["region"] == region for m in console.messages.items()), f"{region} console saw another region's alert"

            # The alert says why: rule, threshold, window and completeness; and the mean is right.
            rules = load_tier_rules(REPO_ROOT / "config" / "tiers.yaml")
            assert alert["rule_id"] == rules.rule_id and alert["threshold"] == rules.thresholds[alert["parameter"]].red
            assert alert["window_end"] - alert["window_start"] == 3_600_000 and alert["completeness"] >= 0.75
            assert alert["value"] > alert["threshold"]
            if alert["station_id"] not in faulty_stations(net, CONFIG):
                mean, n = reference_window_mean(net, alert["station_id"], alert["parameter"], alert["window_start"], alert["window_end"])
                assert n == alert["window_minutes"]
                assert alert["value"] == pytest.approx(mean, rel=1e-9)

            # And InfluxDB has it, queried back with Flux.
            with InfluxDBClient(url=s.influx_url, token=stack.secrets.influx_token, org="-") as client:
                flux = f'''from(bucket: "{s.influx_db}/autogen") |> range(start: 2026-11-21T00:00:00Z, stop: 2026-11-23T00:00:00Z)
                  |> filter(fn: (r) => r._measurement == "alert" and r._field == "alert_id" and r._value == "{alert['alert_id']}")'''
                rows = []
                for _ in range(60):
                    rows = [rec for table in client.query_api().query(flux) for rec in table.records]
                    if rows:
                        break
                    services.stop.wait(1)
                assert rows, "alert not found in InfluxDB"
                assert rows[0].values["station_id"] == alert["station_id"] and rows[0].values["tier"] == "red"
            # The index stage published the station's real-time AQI for the alert's hour, from the same means.
            assert_index_matches_reference(s, net, alert)

            # Nothing is dropped: every reading of every window the watermark has closed is
            # either counted in a one-minute aggregate or kept on the late topic.
            assert_every_reading_accounted_for(s, net)
            assert services.errors == []
    finally:
        if cluster is not None:
            cluster.stop()
        for c in consoles.values():
            c.stop()
        server.stop()
