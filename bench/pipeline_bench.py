"""Pipeline benchmark on the real local stack (this machine: 2 cores).

Prints, from one run:
  1. bridge throughput: readings/s from MQTT publish to Kafka-confirmed (devices -> Mosquitto -> bridge -> Kafka);
  2. raw Kafka consume rate of the same readings (confluent-kafka, one consumer);
  3. Flink alignment throughput on that backlog (aligned one-minute outputs/s, with and without job start-up)
     and its ratio to the raw consume rate: the aligned-only job (--no-calibration);
  3b. calibration cost (issue 4): the calibrated job (calibration UDF + QC + station minutes, the registry of
     config/calibration.yaml on its control topic) on a copy of the same backlog in a second namespace, run
     after (or, --calibrated-first, before) the aligned-only job; readings/s excluding start-up from its first
     output to its last station minute (calibration and QC done), beside the aligned-only rate; their ratio and
     whether calibration costs at most 25% of throughput (also like-for-like ratios: aligned topic, all outputs);
  4. window output latency: readings produced straight to Kafka, paced in event time; per one-minute result,
     its Kafka timestamp minus the moment the watermark could pass its window (readings out-of-orderness past
     the window's end were in Kafka on every partition); p50 / p99 over every station, parameter and minute;
  5. alert latency: the simulator paced in event time (--speed), from publishing the reading that completes
     a window escalating yellow -> red to the responder's webhook receiving the alert (p50 over those alerts),
     through index stage, alert stage (state machine, ordering, Kafka transaction) and router.
Results also go to bench/results/<UTC timestamp>.json. Run with `make bench` (ARGS="--help");
`--only-throughput` runs sections 1-3b only (e.g. `--only-throughput --steps 120` for a quick check).
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

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Consumer

from alerts.engine import EngineConfig
from connectors.kafka_io import ensure_topics, message_counts

from jointwatch.settings import REPO_ROOT, load_settings
from schemas.topics import READINGS_ALIGNED, READINGS_RAW, STATION_HOURS, STATION_MINUTES, namespaced


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


def _watch_outputs(bootstrap: str, topics: dict[str, str], quiet_s: float, timeout_s: float, keep: tuple[str, ...] = ()
                   ) -> tuple[dict[str, dict], dict[str, list[bytes]]]:
    """Read several output topics from the beginning in one consumer: per label (of `topics`, label -> topic)
    its count and the perf_counter of its first and last record; stops after `quiet_s` without a record on any
    of them once something came, or at `timeout_s`. The values of the labels in `keep` are returned too."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800, "queued.max.messages.kbytes": 262144})
    label = {topic: name for name, topic in topics.items()}
    seen = {name: {"n": 0, "first": 0.0, "last": 0.0} for name in topics}
    kept: dict[str, list[bytes]] = {name: [] for name in keep}
    c.subscribe(list(topics.values()))
    t0 = time.perf_counter()
    last_any = 0.0
    try:
        while time.perf_counter() < t0 + timeout_s:
            msgs = c.consume(10000, timeout=0.5)
            now = time.perf_counter()
            got = False
            for m in msgs:
                if m.error():
                    continue
                got = True
                name = label[m.topic()]
                w = seen[name]
                w["first"] = w["first"] or now
                w["last"] = now
                w["n"] += 1
                if name in kept:
                    kept[name].append(m.value())
            if got:
                last_any = now
            elif last_any and now - last_any > quiet_s:
                break
    finally:
        c.close()
    return seen, kept


def _replay_raw(bootstrap: str, src: str, dst: str) -> tuple[int, float]:
    """Copy every record of `src` (to the end it has now) to the same partition of `dst`, in order, with
    key, value, timestamp and headers: the same backlog for a second job. (records, seconds)."""
    from confluent_kafka import OFFSET_BEGINNING, Producer, TopicPartition

    from connectors.kafka_io import producer_config

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex}", "enable.auto.commit": False,
                  "fetch.max.bytes": 52428800, "queued.max.messages.kbytes": 262144})
    producer = Producer(producer_config(bootstrap, **{"linger.ms": 20, "batch.num.messages": 10000, "queue.buffering.max.messages": 500000}))
    errors: list = []
    t0 = time.perf_counter()
    n = 0
    try:
        parts = list(c.list_topics(src, timeout=10).topics[src].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(src, p), timeout=10)[1] for p in parts}
        todo = {p for p, end in ends.items() if end > 0}
        c.assign([TopicPartition(src, p, OFFSET_BEGINNING) for p in parts])
        while todo:
            if time.perf_counter() - t0 > 300:
                raise RuntimeError(f"replaying {src} -> {dst}: partitions {sorted(todo)} not read to their end in 300 s")
            for m in c.consume(10000, timeout=1.0):
                if m.error() or m.offset() >= ends[m.partition()]:
                    continue
                kind, ts = m.timestamp()
                while True:
                    try:
                        producer.produce(dst, value=m.value(), key=m.key(), partition=m.partition(),
                                         timestamp=ts if kind != TIMESTAMP_NOT_AVAILABLE else 0, headers=m.headers(),
                                         on_delivery=lambda err, _m: err and errors.append(err))
                        break
                    except BufferError:
                        producer.poll(0.1)
                n += 1
                if m.offset() >= ends[m.partition()] - 1:
                    todo.discard(m.partition())
            producer.poll(0)
        unflushed = producer.flush(120)
    finally:
        c.close()
    if unflushed or errors:
        raise RuntimeError(f"replaying {src} -> {dst}: {unflushed} unflushed, {len(errors)} failed: {errors[:3]}")
    return n, time.perf_counter() - t0


def _job_run(s, readings: int, calibrated: bool) -> dict:
    """One embedded job over the namespace's whole raw backlog (earliest offsets). Readings/s excluding start-up:
    first to last aligned minute (as the earlier results: `aligned_readings_per_s`); from the job's first output on
    any watched topic (aligned minutes, station hours, station minutes) to its last output of all
    (`all_outputs_readings_per_s`) and, calibrated, to its last station minute (`station_minutes_readings_per_s`:
    calibration and QC done)."""
    from jointwatch.stack.flink import start_embedded_job

    topics = {"aligned": namespaced(READINGS_ALIGNED, s.namespace), "station_hours": namespaced(STATION_HOURS, s.namespace)}
    if calibrated:
        topics["station_minutes"] = namespaced(STATION_MINUTES, s.namespace)
    args = ["--startup-mode", "earliest-offset", "--group-id", f"bench-{s.namespace}", *([] if calibrated else ["--no-calibration"])]
    t_job = time.perf_counter()
    job = start_embedded_job(s, *args)
    try:
        seen, kept = _watch_outputs(s.kafka_bootstrap, topics, 15, 600, keep=("station_minutes",) if calibrated else ())
    finally:
        job.stop()
    if not seen["aligned"]["n"] or (calibrated and not seen["station_minutes"]["n"]):
        raise RuntimeError(f"{'calibrated' if calibrated else 'aligned-only'} job wrote {seen}; job log:\n{job.tail()}")
    first = min(w["first"] for w in seen.values() if w["n"])
    last = max(w["last"] for w in seen.values())
    rate = lambda t_end: readings / (t_end - first) if t_end > first else float("nan")  # noqa: E731
    out = {
        "namespace": s.namespace,
        "startup_s": first - t_job,
        "aligned_outputs": seen["aligned"]["n"],
        "station_hour_outputs": seen["station_hours"]["n"],
        "aligned_readings_per_s": readings / (seen["aligned"]["last"] - seen["aligned"]["first"]),
        "all_outputs_readings_per_s": rate(last),
        "readings_per_s_incl_startup": readings / (last - t_job),
    }
    if calibrated:
        calibrated_values, sensors, flagged = 0, set(), 0
        for raw in kept["station_minutes"]:
            d = json.loads(raw)
            for k, v in d.items():
                if k.endswith("_model") and v:
                    calibrated_values += 1
                    sensors.add((d["station_id"], k[: -len("_model")]))
                elif k.endswith("_qc") and v:
                    flagged += 1
        out.update({
            "station_minute_outputs": seen["station_minutes"]["n"],
            "station_minutes_readings_per_s": rate(seen["station_minutes"]["last"]),
            "station_minutes_lag_after_aligned_s": seen["station_minutes"]["last"] - seen["aligned"]["last"],
            "calibrated_values": calibrated_values,
            "calibrated_sensors_seen": len(sensors),
            "qc_flagged_values": flagged,
        })
    return out


def throughput(stack, steps: int, calibrated_first: bool = False) -> dict:
    """Bridge, raw consume, and the job twice on the same backlog, one after the other: aligned-only
    (--no-calibration) in the namespace the bridge filled, calibrated (UDF + QC + station minutes, the registry
    of config/calibration.yaml on its control topic) in a second namespace holding a copy of the same raw records."""
    from calibration.control_topic import publish as publish_registry
    from calibration.registry import load_registry
    from connectors.mqtt_bridge import MqttKafkaBridge
    from simulator.publisher import publish
    from simulator.scenario import ScenarioConfig

    ns = uuid.uuid4().hex[:6]
    s = stack.settings.with_(namespace=f"bench{ns}")
    s_cal = stack.settings.with_(namespace=f"benchcal{ns}")
    ensure_topics(s.kafka_bootstrap, namespace=s.namespace)
    ensure_topics(s.kafka_bootstrap, namespace=s_cal.namespace)
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

    # The same backlog for the calibrated job, and its registry, before either job runs (nothing else competes for the CPU then).
    n_copied, copy_s = _replay_raw(s.kafka_bootstrap, raw, namespaced(READINGS_RAW, s_cal.namespace))
    copied = message_counts(s.kafka_bootstrap, [READINGS_RAW], s_cal.namespace)[READINGS_RAW.name]
    if n_copied != n_raw or copied != n_raw:
        raise RuntimeError(f"replay copied {n_copied} records ({copied} on the topic) of {n_raw}")
    registry = load_registry(REPO_ROOT / "config" / "calibration.yaml", net)
    publish_registry(s.kafka_bootstrap, registry.messages(), s_cal.namespace)

    runs: dict[str, dict] = {}
    for calibrated in ((True, False) if calibrated_first else (False, True)):
        runs["calibrated" if calibrated else "aligned_only"] = _job_run(s_cal if calibrated else s, expected, calibrated)
    plain, cal = runs["aligned_only"], runs["calibrated"]
    cal.update({"registry_sensors": len(registry.sensors), "registry_versions": len(registry.entries)})
    # Issue 4: calibrated readings/s through the job (until its last calibrated, QC'd station minute) against
    # the aligned-only rate (until its last aligned minute); calibration may cost at most 25%.
    ratio = cal["station_minutes_readings_per_s"] / plain["aligned_readings_per_s"]
    return {
        "messages": stats.published,
        "readings": expected,
        "bridge_readings_per_s": expected / bridge_s,
        "bridge_messages_per_s": stats.published / bridge_s,
        "raw_consume_readings_per_s": raw_rate,
        "replay_readings_per_s": n_copied / copy_s,
        # the aligned-only job, measured as in the earlier results (first to last aligned minute)
        "aligned_outputs": plain["aligned_outputs"],
        "flink_readings_per_s_excl_startup": plain["aligned_readings_per_s"],
        "flink_readings_per_s_incl_startup": plain["readings_per_s_incl_startup"],
        "flink_startup_s": plain["startup_s"],
        "calibration": {
            "order": "calibrated first" if calibrated_first else "aligned-only first",
            "aligned_only": plain,
            "calibrated": cal,
            "aligned_only_readings_per_s": plain["aligned_readings_per_s"],
            "calibrated_readings_per_s": cal["station_minutes_readings_per_s"],
            "calibrated_to_aligned_only_ratio": ratio,
            # like for like: each job's aligned topic; each job's last output of all
            "aligned_topic_ratio": cal["aligned_readings_per_s"] / plain["aligned_readings_per_s"],
            "all_outputs_ratio": cal["all_outputs_readings_per_s"] / plain["all_outputs_readings_per_s"],
            "calibration_cost": 1 - ratio,
            "cost_target": 0.25,
            "cost_target_met": bool(ratio >= 0.75),
        },
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
    p.add_argument("--skip-latency", action="store_true", help="skip the window and alert latency sections (4, 5)")
    p.add_argument("--only-throughput", action="store_true", help="run only the throughput sections (1-3b); same as --skip-latency")
    p.add_argument("--calibrated-first", action="store_true",
                   help="run the calibrated job before the aligned-only one (to control for warm-up and order)")
    args = p.parse_args()

    from jointwatch.stack.local import LocalStack

    state = REPO_ROOT / ".state" / "bench"
    shutil.rmtree(state, ignore_errors=True)
    results: dict = {"machine": f"{os.cpu_count()} cores", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with LocalStack(load_settings(state_dir=state, port_base=args.port_base)) as stack:
        results["throughput"] = throughput(stack, args.steps, args.calibrated_first)
        t = results["throughput"]
        t["flink_to_raw_consume_ratio"] = t["flink_readings_per_s_excl_startup"] / t["raw_consume_readings_per_s"]
        c = t["calibration"]
        print(f"aligned-only {c['aligned_only_readings_per_s']:,.0f} readings/s, calibrated {c['calibrated_readings_per_s']:,.0f} "
              f"readings/s ({c['order']}): ratio {c['calibrated_to_aligned_only_ratio']:.2f}, cost {c['calibration_cost']:.0%} "
              f"-> target <= 25% {'met' if c['cost_target_met'] else 'NOT met'}")
        if not (args.skip_latency or args.only_throughput):
            results["window_latency"] = window_latency(stack, args.window_minutes)
            results["latency"] = latency(stack, args.speed, args.latency_steps)
    print(json.dumps(results, indent=2))
    out = REPO_ROOT / "bench" / "results" / f"{results['when'].replace(':', '')}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(REPO_ROOT)}")


if __name__ == "__main__":
    main()
