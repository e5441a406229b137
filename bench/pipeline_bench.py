"""Pipeline benchmark on the real local stack (this machine: 2 cores).

Prints, from one run:
  1. bridge throughput: readings/s from MQTT publish to Kafka-confirmed (devices -> Mosquitto -> bridge -> Kafka);
  2. raw Kafka consume rate of the same readings (confluent-kafka, one consumer);
  3. Flink alignment throughput on that backlog (aligned one-minute outputs/s, with and without job start-up)
     and its ratio to the raw consume rate;
  4. window output latency: readings produced straight to Kafka, paced in event time; per one-minute result,
     its Kafka timestamp minus the moment the watermark could pass its window (readings out-of-orderness past
     the window's end were in Kafka on every partition); p50 / p99 over every station, parameter and minute;
  5. alert latency: the simulator paced in event time (--speed), from publishing the reading that completes
     a window escalating yellow -> red to the responder's webhook receiving the alert (p50 over those alerts),
     through index stage, alert stage (state machine, ordering, Kafka transaction) and router.
Results also go to bench/results/<UTC timestamp>.json. Run with `make bench` (ARGS="--help").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import threading
import time
import uuid

from confluent_kafka import TIMESTAMP_CREATE_TIME, Consumer

from alerts.engine import EngineConfig
from connectors.kafka_io import ensure_topics, message_counts

from jointwatch.settings import REPO_ROOT, load_settings
from schemas.topics import READINGS_ALIGNED, READINGS_RAW, namespaced


def _consume_all(bootstrap: str, topic: str, expected: int | None, quiet_s: float, timeout_s: float) -> tuple[int, float, float, float]:
    """(count, t_start, t_first, t_last) reading a topic from the beginning until `expected` or `quiet_s` of silence."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800, "queued.max.messages.kbytes": 262144})
    c.subscribe([topic])
    n, t0 = 0, time.perf_counter()
    first = last = 0.0
    deadline = t0 + timeout_s
    try:
        while time.perf_counter() < deadline:
            msgs = c.consume(10000, timeout=0.5)
            now = time.perf_counter()
            got = [m for m in msgs if not m.error()]
            if got:
                first = first or now
                last = now
                n += len(got)
                if expected is not None and n >= expected:
                    break
            elif first and now - last > quiet_s:
                break
    finally:
        c.close()
    return n, t0, first, last


def throughput(stack, steps: int) -> dict:
    from connectors.mqtt_bridge import MqttKafkaBridge
    from jointwatch.stack.flink import start_embedded_job
    from simulator.publisher import publish
    from simulator.scenario import ScenarioConfig

    s = stack.settings.with_(namespace=f"bench{uuid.uuid4().hex[:6]}")
    ensure_topics(s.kafka_bootstrap, namespace=s.namespace)
    net = stack.network
    per_step = sum(len(st.parameters) for st in net.stations.values())
    expected = steps * per_step
    raw = namespaced(READINGS_RAW, s.namespace)

    bridge = MqttKafkaBridge(s, net, stack.secrets, client_id=f"bench-bridge-{s.namespace}")
    stop = threading.Event()
    bt = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    bt.start()
    bridge.connected.wait(15)
    t0 = time.perf_counter()
    stats = publish(net, ScenarioConfig(seed=7), secrets=stack.secrets, port=s.mqtt_port, steps=steps, rate=1e7, progress=True)
    while message_counts(s.kafka_bootstrap, [READINGS_RAW], s.namespace)[READINGS_RAW.name] < expected or bridge.pending():
        time.sleep(0.05)
    bridge_s = time.perf_counter() - t0
    stop.set()
    bt.join(30)
    del bridge

    n_raw, t_start, _, t_last = _consume_all(s.kafka_bootstrap, raw, expected, 5, 120)
    raw_rate = n_raw / (t_last - t_start)

    t_job = time.perf_counter()
    job = start_embedded_job(s, "--startup-mode", "earliest-offset")
    try:
        n_out, _, t_first, t_last = _consume_all(s.kafka_bootstrap, namespaced(READINGS_ALIGNED, s.namespace), None, 15, 600)
    finally:
        job.stop()
    return {
        "messages": stats.published,
        "readings": expected,
        "bridge_readings_per_s": expected / bridge_s,
        "bridge_messages_per_s": stats.published / bridge_s,
        "raw_consume_readings_per_s": raw_rate,
        "aligned_outputs": n_out,
        "flink_readings_per_s_excl_startup": expected / (t_last - t_first) if t_last > t_first else float("nan"),
        "flink_readings_per_s_incl_startup": expected / (t_last - t_job),
        "flink_startup_s": t_first - t_job,
    }


def window_latency(stack, minutes: int, step_s: int = 10, speed: float = 10.0) -> dict:
    """Event time paced at `speed`: every `step_s` of event time, one reading per station and parameter, flushed."""
    from confluent_kafka import Producer

    from connectors.kafka_io import producer_config
    from jobs.alignment import load_alignment
    from jointwatch.stack.flink import start_embedded_job

    s = stack.settings.with_(namespace=f"wl{uuid.uuid4().hex[:6]}")
    ensure_topics(s.kafka_bootstrap, namespace=s.namespace)
    ooo_ms = load_alignment(s.alignment_file).out_of_orderness_s * 1000
    raw, aligned = namespaced(READINGS_RAW, s.namespace), namespaced(READINGS_ALIGNED, s.namespace)
    series = [(st, p) for st in stack.network.stations.values() for p in st.parameters]
    producer = Producer(producer_config(s.kafka_bootstrap, **{"linger.ms": 5}))
    start = (int(time.time() * 1000) // 60_000 - 24 * 60) * 60_000  # a whole minute, a day back
    flushed: list[tuple[int, float]] = []  # (event time of the step, wall time it was all in Kafka)

    def step(t: int) -> None:
        for st, p in series:
            producer.produce(raw, key=st.id, value=json.dumps({
                "schema": "jw.reading.v2", "reading_id": f"{st.id}/{p}/{t}", "station_id": st.id, "region": st.region, "medium": st.medium,
                "parameter": p, "value": 1.0, "unit": "u", "event_time": t, "received_at": t, "device_time": str(t), "time_basis": "epoch_ms",
                "clock_corrected": False, "clock_offset_ms": 0, "seq": None, "status": "N"}))
        producer.flush(10)
        flushed.append((t, time.time()))

    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"})
    c.subscribe([aligned])
    job = start_embedded_job(s, "--startup-mode", "earliest-offset")
    samples: list[float] = []
    try:
        t_event, deadline = start, time.time() + 120
        while not [m for m in c.consume(100, timeout=1.0) if not m.error()]:  # warm-up: until the job's first minute is out
            if time.time() > deadline:
                raise RuntimeError(f"no aligned output within 120 s; job log:\n{job.tail()}")
            step(t_event)
            t_event += step_s * 1000
        paced_from, wall0 = t_event, time.time()
        for i in range(minutes * 60 // step_s):
            time.sleep(max(0.0, wall0 + i * step_s / speed - time.time()))
            step(paced_from + i * step_s * 1000)
        idle = time.time()
        while time.time() - idle < 5:
            for m in c.consume(5000, timeout=0.5):
                if m.error():
                    continue
                idle = time.time()
                d = json.loads(m.value())
                kind, ts = m.timestamp()
                if kind != TIMESTAMP_CREATE_TIME or abs(ts / 1000 - time.time()) > 3600:
                    raise RuntimeError(f"aligned records carry no send time (timestamp type {kind}, {ts}): cannot measure")
                if d["window_start"] < paced_from:
                    continue  # windows of the warm-up
                passes = next((w for t, w in flushed if t >= d["window_end"] - 1 + ooo_ms), None)
                if passes is not None:
                    samples.append(ts / 1000 - passes)
    finally:
        c.close()
        job.stop()
    samples.sort()
    q = lambda f: samples[min(len(samples) - 1, int(f * len(samples)))] if samples else float("nan")  # noqa: E731
    return {"speed": speed, "step_s": step_s, "windows": len(samples), "window_latency_s_p50": q(0.5), "window_latency_s_p99": q(0.99),
            "window_latency_s_max": samples[-1] if samples else float("nan")}


def latency(stack, speed: float, steps: int) -> dict:
    from alerts.channels import responder_keys
    from alerts.responder import ResponderServer
    from alerts.routing import load_routing
    from jointwatch.services import Services
    from simulator.publisher import publish
    from simulator.scenario import ScenarioConfig

    s = stack.settings.with_(namespace=f"lat{uuid.uuid4().hex[:6]}")
    cfg = ScenarioConfig(seed=7)
    server = ResponderServer({}, port=0).start()
    routing = load_routing(s.routing_file, stack.network.regions, env={**os.environ, "JW_RESPONDER_PORT": str(server.port)})
    server.keys = responder_keys(routing, stack.secrets.webhook_key)
    arrivals: dict[str, float] = {}
    server.on_alert = lambda item: arrivals.setdefault(item.alert["alert_id"], time.perf_counter())
    try:
        with Services(s, stack.secrets, stack.network, routing):
            time.sleep(20)  # let the job start, so start-up is not counted as alert latency
            t0 = time.perf_counter()
            publish(stack.network, cfg, secrets=stack.secrets, port=s.mqtt_port, steps=steps, speed=speed)
            time.sleep(5)
            items = server.received.items()
    finally:
        server.stop()
    samples = []
    for alert_id, arrived in arrivals.items():
        alert = next(i.alert for i in items if i.alert["alert_id"] == alert_id)
        if alert["tier"] != "red" or alert["previous_tier"] != "yellow":
            continue
        # The reading that completed the window is the last step before window_end; it was due at:
        last_step = (alert["window_end"] - cfg.start_ms) // (cfg.step_s * 1000) - 1
        sent = t0 + last_step * cfg.step_s / speed
        samples.append(arrived - sent)
    return {
        "speed": speed,
        "red_alerts": len(samples),
        "alert_latency_s_p50": statistics.median(samples) if samples else float("nan"),
        "alert_latency_s_max": max(samples) if samples else float("nan"),
        # out-of-orderness + the next reading that moves the watermark + the alert stage's ordering slack
        "event_time_wait_s": (30 + cfg.step_s + EngineConfig().order_slack_ms / 1000) / speed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600, help="simulated minutes for the throughput run (x 36 stations x ~9.7 parameters)")
    p.add_argument("--speed", type=float, default=60.0, help="event-time pacing for the latency run (sim s per wall s)")
    p.add_argument("--latency-steps", type=int, default=200, help="enough for the plume's first yellow -> red escalation (red needs AQI > 200 over 2 h)")
    p.add_argument("--window-minutes", type=int, default=6, help="event-time minutes paced for the window output latency")
    p.add_argument("--port-base", type=int, default=26000)
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args()

    from jointwatch.stack.local import LocalStack

    state = REPO_ROOT / ".state" / "bench"
    shutil.rmtree(state, ignore_errors=True)
    results: dict = {"machine": f"{os.cpu_count()} cores", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with LocalStack(load_settings(state_dir=state, port_base=args.port_base)) as stack:
        results["throughput"] = throughput(stack, args.steps)
        t = results["throughput"]
        t["flink_to_raw_consume_ratio"] = t["flink_readings_per_s_excl_startup"] / t["raw_consume_readings_per_s"]
        if not args.skip_latency:
            results["window_latency"] = window_latency(stack, args.window_minutes)
            results["latency"] = latency(stack, args.speed, args.latency_steps)
    print(json.dumps(results, indent=2))
    out = REPO_ROOT / "bench" / "results" / f"{results['when'].replace(':', '')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
