"""One simulated episode through the whole pipeline, on the real stack:
devices -> Mosquitto -> bridge -> Kafka -> Flink job -> index stage -> alert
stage (tier state machine, origin from the apportionment stage) -> router -> the
lead region's and the downwind region's signed webhooks and MQTT topics, and ->
sink -> InfluxDB (Flux).

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
from alerts.engine import EngineConfig
from alerts.responder import ConsoleSubscriber, ResponderServer
from alerts.routing import load_routing, plan_deliveries
from alerts.tiers.rules import load_rules
from connectors.clock_skew import ClockSkew
from connectors.mqtt_bridge import load_clock_config
from connectors.normalize import normalize
from jobs.indices import AQI_POLLUTANTS, station_index
from jointwatch.services import Services
from jointwatch.stack.flink import FlinkCluster
from simulator.publisher import publish
from schemas.models import validation_errors
from schemas.topics import INDICES, READINGS_ALIGNED, READINGS_LATE, READINGS_REVISIONS, namespaced
from simulator.scenario import ScenarioConfig, device_messages, faulty_stations
from tests.integration.kafka_read import read_until

pytestmark = [pytest.mark.integration, pytest.mark.flink]

CONFIG = ScenarioConfig(seed=7)
STEPS = 540  # 9 simulated hours: the plume (from minute 40, for 3 h) raises, escalates and clears


def reference_window_mean(network, station: str, parameter: str, start_ms: int, end_ms: int, on_time: set[tuple[str, str, int]]) -> tuple[float, int]:
    """Independent computation from the exact payloads the devices sent (clean-clock station), of the
    readings in minutes that had a first result (the station windows are made of first results; a
    station reports once a minute, so a minute without one had its reading late: revised or on the late topic)."""
    values = []
    for topic, payload in device_messages(network, CONFIG, 0, STEPS):
        doc = json.loads(payload)
        if doc["station_id"] != station:
            continue
        ts = doc["ts"]
        ms = int(ts) if isinstance(ts, (int, float)) and ts > 1e11 else int(np.datetime64(ts.rstrip("Z"), "ms").astype(np.int64))
        if start_ms <= ms < end_ms and parameter in doc["values"] and (station, parameter, ms // 60_000) in on_time:
            values.append(doc["values"][parameter])
    return float(np.mean(values)), len(values)


def assert_index_matches_reference(net, index, on_time: set[tuple[str, str, int]]) -> None:
    """The published index equals one computed here from the payloads the devices sent."""
    station = net.stations[index["station_id"]]
    means = {p: reference_window_mean(net, station.id, p, index["window_start"], index["window_end"], on_time) for p in AQI_POLLUTANTS if p in station.parameters}
    expected = station_index(station, index["window_start"], index["window_end"], means)
    assert (index["value"], index["primary"]) == (expected["value"], expected["primary"])


def assert_every_reading_accounted_for(s, net) -> set[tuple[str, str, int]]:
    """Every reading of a closed window is in its minute's latest version (first result or revision) or on
    the late topic; returns the (station, parameter, minute) that had a first result."""
    sent: Counter = Counter()
    clocks = ClockSkew(load_clock_config(s.clock_file))  # the bridge's correction: the payloads carry the gateway time
    for topic, payload in device_messages(net, CONFIG, 0, STEPS):
        for r in normalize(topic, payload, net, CONFIG.start_ms, clocks):
            sent[(r["station_id"], r["parameter"], r["event_time"] // 60_000)] += 1
    # Windows up to 15 minutes before the last reading are closed (largest clock skew + out-of-orderness).
    cutoff = max(minute for _, _, minute in sent) - 15
    closed = {k: n for k, n in sent.items() if k[2] < cutoff}
    aligned_topic, late_topic = namespaced(READINGS_ALIGNED, s.namespace), namespaced(READINGS_LATE, s.namespace)
    revisions_topic = namespaced(READINGS_REVISIONS, s.namespace)
    latest: dict[tuple[str, str, int], tuple[int, int]] = {}  # key -> (version, distinct + duplicates)
    late: Counter = Counter()
    missing = dict(closed)
    done = 0

    def got(key: tuple[str, str, int]) -> int:
        return latest.get(key, (0, 0))[1] + late[key]

    def complete(messages) -> bool:  # incremental: the topics hold ~10^5 messages
        nonlocal done
        for topic, d in messages[done:]:
            if d is None:
                continue  # a revision's tombstone
            if topic == late_topic:
                assert validation_errors("late_reading", d) == [] and d["late_by_ms"] < 0
                key = (d["station_id"], d["parameter"], d["event_time"] // 60_000)
                late[key] += 1
            else:
                key = (d["station_id"], d["parameter"], d["window_start"] // 60_000)
                if d["version"] >= latest.get(key, (0, 0))[0]:
                    latest[key] = (d["version"], d["count"] + d["duplicates"])
            if key in missing and got(key) >= missing[key]:
                del missing[key]
        done = len(messages)
        return not missing

    messages = read_until(s.kafka_bootstrap, [aligned_topic, revisions_topic, late_topic], complete, timeout_s=180)
    assert {k: got(k) for k in closed} == closed
    return {(d["station_id"], d["parameter"], d["window_start"] // 60_000) for t, d in messages if t == aligned_topic}


def alerts_of(received, kind: str, subject: str) -> list[dict]:
    """The distinct alerts (by id, in event-time order) for one subject and kind among the deliveries."""
    seen = {i.alert["alert_id"]: i.alert for i in received if i.alert["kind"] == kind and i.alert["subject"] == subject}
    return sorted(seen.values(), key=lambda a: a["window_end"])


def first_red_north(received) -> dict | None:
    reds = [i.alert for i in received if i.alert["kind"] == "air" and i.alert["tier"] == "red" and i.alert["scope"] == "station" and i.alert["origin_region"] == "north"]
    return min(reds, key=lambda a: (a["window_end"], a["subject"])) if reds else None


def cleared(received, subject: str) -> bool:
    return any(a["action"] == "clear" for a in alerts_of(received, "air", subject))


@pytest.mark.parametrize("engine", ["embedded", "cluster"])
def test_episode_alerts_reach_lead_and_assist_regions_and_influxdb(stack, engine: str) -> None:
    s = stack.isolated()
    net = stack.network
    server = ResponderServer({}, port=0).start()
    routing = load_routing(s.routing_file, net.regions, env={**os.environ, "JW_RESPONDER_PORT": str(server.port)})
    server.keys = responder_keys(routing, stack.secrets.webhook_key)
    consoles = {r: ConsoleSubscriber.for_region(s, stack.secrets, r).start() for r in net.regions}
    cluster = FlinkCluster(s) if engine == "cluster" else None
    try:
        with Services(s, stack.secrets, net, routing, with_job=cluster is None, alert_config=EngineConfig(idle_s=5.0)) as services:
            if cluster is not None:
                cluster.start()
                job_id = cluster.submit("--startup-mode", "earliest-offset")
            stats = publish(net, CONFIG, secrets=stack.secrets, port=s.mqtt_port, steps=STEPS, rate=3000)
            assert stats.published == stats.acked == STEPS * len(net.stations)

            def episode_over(items) -> bool:
                red = first_red_north(items)
                return red is not None and cleared(items, red["subject"])

            received = server.received.wait_for(episode_over, timeout=240)
            if cluster is not None:
                assert cluster.job_status(job_id) == "RUNNING"
            red = first_red_north(received)
            assert red is not None, f"no red alert reached north; services errors: {services.errors}; job alive: {services.job_alive()}"

            # The origin station's episode: yellow, then red, then (after the plume) cleared, one episode id.
            episode = alerts_of(received, "air", red["subject"])
            actions = [(a["action"], a["tier"]) for a in episode]
            assert actions[:2] == [("raise", "yellow"), ("escalate", "red")], actions
            assert actions[-1] == ("clear", "green") and len({a["episode_id"] for a in episode}) == 1, actions
            rules = load_rules(s.tier_rules_file, net)
            north_air = rules.for_region("north").air
            assert red["threshold"] == next(b.enter_above for b in north_air.bands if b.tier == "red") and red["value"] > red["threshold"]
            assert red["window_end"] - red["condition_since"] >= 120 * 60_000  # AQI > 200 for 2 h
            assert red["rule_set_id"] == rules.rule_set_id and red["rule_version"] == rules.version and red["standard"].startswith("HJ 633")
            assert red["reason"].startswith("aqi ") and red["completeness"] >= 0.75

            # Lead: both north responders, signed (the server verifies). Assist: the downwind region.
            assert red["affected_regions"] == ["central"], red["affected_regions"]
            expected = {(r.id, role) for region, role in (("north", "lead"), ("central", "assist")) for r in routing.regions[region].responders if role in r.roles}
            received = server.received.wait_for(
                lambda items: {(i.responder_id, i.alert["delivery"]["role"]) for i in items if i.alert["alert_id"] == red["alert_id"]} >= expected, timeout=30
            )
            deliveries = {(i.responder_id, i.alert["delivery"]["role"]) for i in received if i.alert["alert_id"] == red["alert_id"]}
            assert deliveries == expected
            for region in ("north", "central"):
                feed = consoles[region].messages.wait_for(lambda ms: any(m["alert_id"] == red["alert_id"] for m in ms), timeout=30)
                assert [m["delivery"]["role"] for m in feed if m["alert_id"] == red["alert_id"]] == ["lead" if region == "north" else "assist"]
            for region, console in consoles.items():
                for m in console.messages.items():
                    assert m["delivery"]["region"] == region and region in (m["origin_region"], *m["affected_regions"]), f"{region} console saw {m}"
            assert not any(m["alert_id"] == red["alert_id"] for m in consoles["south"].messages.items())

            # The plume reaching central: its alert is led by north (lead) with central assisting, once the
            # apportionment stage attributes central's pollution to north (raised earlier, then reattributed).
            def central_led_by_north(items) -> list[dict]:
                return [i.alert for i in items if i.alert["kind"] == "air" and i.alert["region"] == "central" and i.alert["origin_region"] == "north"]

            received = server.received.wait_for(lambda items: bool(central_led_by_north(items)), timeout=60)
            led = min(central_led_by_north(received), key=lambda a: (a["window_end"], a["subject"]))
            assert "central" in led["affected_regions"] and led["inputs"]["attribution"]["method"] == "apportionment", led
            assert led["inputs"]["attribution"]["record_id"].startswith("transport:central:"), led["inputs"]["attribution"]
            lead_assist = {(d.responder_id, d.role) for d in plan_deliveries(led, routing) if d.responder_id}
            assert {r for r, _ in lead_assist} >= {"north-duty", "central-duty"}, lead_assist
            received = server.received.wait_for(
                lambda items: {(i.responder_id, i.alert["delivery"]["role"]) for i in items if i.alert["alert_id"] == led["alert_id"]} >= lead_assist, timeout=30
            )
            assert {(i.responder_id, i.alert["delivery"]["role"]) for i in received if i.alert["alert_id"] == led["alert_id"]} == lead_assist

            # The alert's value is the AQI the index stage published for that window.
            (index,) = [d for _, d in read_until(s.kafka_bootstrap, [namespaced(INDICES, s.namespace)],
                                                 lambda m: any(d["index_id"] == red["inputs"]["index_id"] for _, d in m), timeout_s=60)
                        if d["index_id"] == red["inputs"]["index_id"]]
            assert validation_errors("index", index) == [] and index["value"] == red["value"] and index["station_id"] == red["subject"]

            # And InfluxDB has it, queried back with Flux.
            with InfluxDBClient(url=s.influx_url, token=stack.secrets.influx_token, org="-") as client:
                flux = f'''from(bucket: "{s.influx_db}/autogen") |> range(start: 2026-11-21T00:00:00Z, stop: 2026-11-23T00:00:00Z)
                  |> filter(fn: (r) => r._measurement == "alert" and r._field == "alert_id" and r._value == "{red['alert_id']}")'''
                rows = []
                for _ in range(60):
                    rows = [rec for table in client.query_api().query(flux) for rec in table.records]
                    if rows:
                        break
                    services.stop.wait(1)
                assert rows, "alert not found in InfluxDB"
                assert rows[0].values["subject"] == red["subject"] and rows[0].values["tier"] == "red"

            # Nothing is dropped: every reading of every window the watermark has closed is
            # either counted in its minute's latest version or kept on the late topic.
            on_time = assert_every_reading_accounted_for(s, net)
            if red["subject"] not in faulty_stations(net, CONFIG):
                assert_index_matches_reference(net, index, on_time)
            assert services.errors == []
    finally:
        if cluster is not None:
            cluster.stop()
        for c in consoles.values():
            c.stop()
        server.stop()
