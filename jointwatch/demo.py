"""`jointwatch demo`: the whole pipeline on the embedded local stack, with the
simulated station network, printing alerts as each region's responders get them."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import click

from jointwatch.settings import REPO_ROOT, Settings
from schemas.topics import Topic

TIER_COLOUR = {"red": "red", "yellow": "yellow", "green": "green"}


@click.command("demo")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=REPO_ROOT / ".state" / "demo", show_default=True, help="Demo state (wiped at start).")
@click.option("--port-base", type=int, default=None, help="Loopback port base [env JW_PORT_BASE; default 17000].")
@click.option("--duration", type=click.FloatRange(min=1), default=None, help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--speed", type=click.FloatRange(min=1), default=240.0, show_default=True, help="Simulated seconds per wall second.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed (same seed => same readings and alerts).")
def demo(state_dir: Path, port_base: int | None, duration: float | None, speed: float, seed: int) -> None:
    """Start Mosquitto, Kafka, InfluxDB, the Flink job, bridge, router, sink and
    demo responders; run the simulated multi-region network through them; print
    every alert delivery; shut everything down on Ctrl-C or after --duration."""
    from alerts.channels import responder_keys
    from alerts.responder import ConsoleSubscriber, ResponderServer, describe
    from alerts.routing import load_routing
    from jointwatch.cli_options import make_settings, stop_on_signals
    from jointwatch.services import Services
    from jointwatch.stack.local import LocalStack
    from jointwatch.stack.processes import StackError
    from schemas.errors import ConfigError
    from simulator.publisher import publish
    from simulator.scenario import ScenarioConfig, faulty_stations
    from simulator.sensors import SensorDrift

    for name in ("alerts", "connectors", "jointwatch"):  # the demo narrates; services log only problems
        logging.getLogger(name).setLevel(logging.WARNING)
    shutil.rmtree(state_dir, ignore_errors=True)  # the demo owns this directory: same seed => same run
    settings = make_settings(None, state_dir, port_base)
    stop = stop_on_signals()
    started = time.monotonic()
    lock = threading.Lock()

    def say(line: str, **style) -> None:
        with lock:
            click.secho(f"{time.monotonic() - started:6.1f}s  {line}", **style)

    say(f"starting Mosquitto, Kafka and InfluxDB in {state_dir} ...", fg="cyan")
    try:
        stack = LocalStack(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.down)  # also after a partial start
        try:
            stack.up(tied=True)
        except StackError as exc:
            raise click.ClickException(str(exc)) from None
        net = stack.network
        server = ResponderServer({}, port=0).start()
        routing = load_routing(settings.routing_file, net.regions, env={**os.environ, "JW_RESPONDER_PORT": str(server.port)})
        names = {r.id: r.name for r in routing.responders()}
        server.keys = responder_keys(routing, stack.secrets.webhook_key)
        server.on_alert = lambda item: say(
            f"{describe(names[item.responder_id], item.alert)}\n"
            f"          why: {item.alert['reason']} ({item.alert['rule_id']} v{item.alert['rule_version']}"
            f"{', ' + item.alert['standard'] if item.alert['standard'] else ''}), "
            f"window {_utc(item.alert['window_start'])} .. {_utc(item.alert['window_end'])}, completeness {item.alert['completeness']:.2f}",
            fg=TIER_COLOUR[item.alert["tier"]],
        )
        consoles = [
            ConsoleSubscriber.for_region(
                settings, stack.secrets, region,
                on_alert=lambda a, r=region: say(f"  [{r} console, MQTT] {a['action']} {a['tier']} {a['subject']} {a['kind']}/{a['indicator']} ({a['delivery']['role']})", dim=True),
            ).start()
            for region in net.regions
        ]
        # The pod beside Hulín's reference analyzer has drifted +20% over the two weeks before the run.
        drifting = SensorDrift(DRIFTING[0], DRIFTING[1], 0.20, 14, start_ms=ScenarioConfig().start_ms - 14 * 86_400_000)
        config = ScenarioConfig(seed=seed, drift=(drifting,))
        say(f"network: {len(net.regions)} regions, {len(net.stations)} stations; device clock faults: {faulty_stations(net, config)}")
        drift = _demo_drift(settings, net)
        with Services(settings, stack.secrets, net, routing, metrics=True, drift=drift) as services:
            say(f"bridge, router, sink up (metrics: http://127.0.0.1:{settings.port('metrics_port')}/metrics); "
                f"Flink job starting; simulator at {speed:.0f}x, plume and spill from sim minute {config.plume_start_s / 60:.0f}", fg="cyan")
            _send_bad_input(settings, stack.secrets, net, say)
            health = threading.Thread(target=_show_device_health, args=(settings, services.stop, say), daemon=True)
            health.start()
            origins = threading.Thread(target=_show_apportionment, args=(settings, services.stop, say), daemon=True)
            origins.start()
            corrected = threading.Thread(target=_show_calibration, args=(settings, services.stop, say), daemon=True)
            corrected.start()
            proposals = threading.Thread(target=_show_proposals, args=(settings, drift[0], services.stop, say), daemon=True)
            proposals.start()
            sim = threading.Thread(
                target=publish, args=(net, config),
                kwargs=dict(secrets=stack.secrets, port=settings.mqtt_port, speed=speed, stop=services.stop),
                daemon=True,
            )
            sim.start()
            deadline = None if duration is None else time.monotonic() + duration
            while not stop.is_set() and not services.stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if services.job is not None and not services.job_alive():
                    say(f"the Flink job exited; its log ends with:\n{services.job.tail()}", fg="red")
                    break
                time.sleep(0.5)
            say("shutting down ...", fg="cyan")
            services.stop.set()
            sim.join(15)
            for t in (health, origins, corrected, proposals):
                t.join(5)
            _summary(settings, stack.secrets, len(server.received.items()), say)
        for c in consoles:
            c.stop()
        server.stop()
    if services.errors:
        raise click.ClickException(f"services failed: {services.errors}")


def _send_bad_input(settings, secrets, net, say) -> None:
    """One device sends garbage and an impossible value: both are dead-lettered, nothing stops."""
    from connectors.mqtt_io import mqtt_client
    from schemas.topics import MQTT_UP

    station = sorted(net.stations)[0]
    client = mqtt_client(f"demo-bad-{station}", station, secrets.mqtt_password(station))
    client.connect("127.0.0.1", settings.mqtt_port)
    client.loop_start()
    topic = MQTT_UP.format(region=net.stations[station].region, station_id=station)
    for payload in (b"{not json", b'{"station_id": "%s", "ts": "2026-11-22T00:00:00Z", "values": {"pm25": -5}}' % station.encode()):
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()
    say(f"{station} sent a malformed payload and a negative PM2.5: both go to the dead-letter topic with the reason", dim=True)


def _follow(settings: Settings, topic: Topic, stop: threading.Event, show: Callable[[dict], None]) -> None:
    """Call `show` with every record of `topic` (this run's namespace) until `stop`."""
    import json
    import uuid

    from confluent_kafka import Consumer

    from connectors.kafka_io import consumer_config
    from schemas.topics import namespaced

    consumer = Consumer(consumer_config(settings.kafka_bootstrap, f"jw-demo-{topic.name}-{uuid.uuid4().hex[:8]}"))
    consumer.subscribe([namespaced(topic, settings.namespace)])
    try:
        while not stop.is_set():
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error() and msg.value() is not None:
                show(json.loads(msg.value()))
    finally:
        consumer.close()


def _show_device_health(settings: Settings, stop: threading.Event, say: Callable[..., None]) -> None:
    """One dim line per device-health event: the bridge correcting (or no longer correcting) a device's clock."""
    from schemas.topics import DEVICE_HEALTH

    def show(e: dict) -> None:
        say(f"  [device health] {e['station_id']} {e['kind']} at {_utc(e['reference_time'])}: {e['reason']}", dim=True)

    _follow(settings, DEVICE_HEALTH, stop, show)


def _show_apportionment(settings: Settings, stop: threading.Event, say: Callable[..., None]) -> None:
    """One line per region window whose pollution came (in part) from another region; the
    windows with no external origin (most of them) are not printed."""
    from schemas.models import is_progress
    from schemas.topics import APPORTIONMENT

    def show(a: dict) -> None:
        if is_progress(a) or a["kind"] != "transport" or a["origin_region"] is None:  # reaches name their responsible region too
            return
        shares = ", ".join(f"{k} {v:.0%}" for k, v in sorted(a["shares"].items(), key=lambda kv: -kv[1]))
        say(f"  [apportionment] {_utc(a['window_start'])}..{_utc(a['window_end'])} {a['region']} {a['pollutant']}: "
            f"from {a['origin_region']} ({shares})", fg="magenta")

    _follow(settings, APPORTIONMENT, stop, show)


DRIFTING = ("c-a11", "pm25")  # config/network.yaml: colocated_with c-a01; config/calibration.yaml: linear gain 0.75, offset -1.5


def _demo_drift(settings: Settings, net) -> tuple:
    """The calibration file's drift pairs, with time compressed for a demo of minutes: 10-minute
    bins, a 3-hour window (>= 2 h of valid bins), evaluated every 30 minutes of event time, and a
    stricter fit.
    (The shipped settings, hourly bins over 3 days, need days of data.)"""
    from dataclasses import replace

    from calibration.drift_config import load_drift

    config, pairs = load_drift(settings.calibration_file, net)
    # r2 >= 0.9: a 3-hour window without an episode spans little range, and a noise-dominated fit
    # (r2 ~0.8) of a pod that has not drifted could propose a change
    settings_ = replace(config.settings, bin_minutes=10, window_bins=18, min_bins=12, min_r2=0.9)
    return replace(config, settings=settings_, min_minutes_per_bin=8, every_bins=3), pairs


def _show_calibration(settings: Settings, stop: threading.Event, say: Callable[..., None]) -> None:
    """The first calibrated minute of every sensor the registry corrects: raw -> calibrated, and the model."""
    from jobs.validity import INDEX_PARAMETERS
    from schemas.parameters import PARAMETERS
    from schemas.topics import STATION_MINUTES

    shown: set[str] = set()

    def show(m: dict) -> None:
        for p in INDEX_PARAMETERS:
            key = f"{m['station_id']}/{p}"
            if m.get(f"{p}_model") and key not in shown and m.get(p) is not None:
                shown.add(key)
                rh = "" if m["rh"] is None else f", rh {m['rh']:.0f}%"
                say(f"  [calibration] {key} at {_utc(m['window_start'])}: raw {m[f'{p}_raw']:.1f} -> {m[p]:.1f} {PARAMETERS[p].unit} "
                    f"({m[f'{p}_model']}{rh}, QC flags {m[f'{p}_qc']})", fg="blue")

    _follow(settings, STATION_MINUTES, stop, show)


def _show_proposals(settings: Settings, drift, stop: threading.Event, say: Callable[..., None]) -> None:
    """Each drift proposal, beside the correction the simulated drift calls for."""
    from schemas.topics import CALIBRATION_PROPOSALS

    gain, offset = 0.75 / 1.20, -1.5  # the registry's model of the pod, over the +20% it has drifted

    def show(pr: dict) -> None:
        model, fit = pr["proposed"], pr["fit"]
        coeffs = model.get("coefficients", {})
        truth = f" (truth for the simulated +20%: gain {gain:.3f}, offset {offset:+.2f})" if (pr["station_id"], pr["parameter"]) == DRIFTING else ""
        say(f"  [drift proposal {pr['proposal_id']}] {pr['sensor']} vs {pr['reference_station_id']}, "
            f"{_utc(pr['window_start'])}..{_utc(pr['window_end'])}: {pr['reason']}; proposed gain {coeffs.get('gain', float('nan')):.3f}, "
            f"offset {coeffs.get('offset', float('nan')):+.2f}, r2 {fit['r2']:.2f} over {fit['n']} bins{truth}; "
            f"`jointwatch calibration accept {pr['proposal_id']}` to adopt it", fg="yellow")

    _follow(settings, CALIBRATION_PROPOSALS, stop, show)


def _summary(settings, secrets, deliveries: int, say) -> None:
    from influxdb_client import InfluxDBClient

    from connectors.kafka_io import message_counts
    from schemas.topics import ALL_TOPICS

    counts = message_counts(settings.kafka_bootstrap, ALL_TOPICS)
    say("Kafka: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    with InfluxDBClient(url=settings.influx_url, token=secrets.influx_token, org="-") as client:
        flux = f'from(bucket: "{settings.influx_db}/autogen") |> range(start: 0) |> filter(fn: (r) => r._field == "mean" or r._field == "alert_id" or r._field == "index_id" or r._field == "record_id" or (r._measurement == "station_minute" and (r._field == "temp" or r._field == "ph_raw"))) |> group(columns: ["_measurement"]) |> count()'
        stored = {t.records[0].values["_measurement"]: t.records[0].get_value() for t in client.query_api().query(flux) if t.records}
    say(f"InfluxDB: {stored}; webhook deliveries received: {deliveries}")


def _utc(ms: int) -> str:
    return time.strftime("%H:%MZ", time.gmtime(ms / 1000))
