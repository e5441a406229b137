"""`jointwatch demo`: the whole pipeline on the embedded local stack, with the
simulated station network, printing alerts as each region's responders get them."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import click

from jointwatch.settings import REPO_ROOT


@click.command("demo")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=REPO_ROOT / ".state" / "demo", show_default=True, help="Demo state (wiped at start).")
@click.option("--port-base", type=int, default=None, help="Loopback port base [env JW_PORT_BASE; default 17000].")
@click.option("--duration", type=click.FloatRange(min=1), default=None, help="Stop after this many seconds (default: run until Ctrl-C).")
@click.option("--speed", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Simulated seconds per wall second.")
@click.option("--seed", type=int, default=7, show_default=True, help="Simulator seed (same seed => same readings and alerts).")
def demo(state_dir: Path, port_base: int | None, duration: float | None, speed: float, seed: int) -> None:
    """Start Mosquitto, Kafka, InfluxDB, the Flink job, bridge, router, sink and
    demo responders; run the simulated multi-region network through them; print
    every alert delivery; shut everything down on Ctrl-C or after --duration."""
    from alerts.channels import responder_keys
    from alerts.responder import ConsoleSubscriber, ResponderServer, describe
    from alerts.routing import load_routing
    from jointwatch.cli import make_settings, stop_on_signals
    from jointwatch.services import Services
    from jointwatch.stack.local import LocalStack
    from simulator.publisher import publish
    from simulator.scenario import ScenarioConfig, faulty_stations

    shutil.rmtree(state_dir, ignore_errors=True)  # the demo owns this directory: same seed => same run
    settings = make_settings(None, state_dir, port_base)
    stop = stop_on_signals()
    started = time.monotonic()
    click.secho(f"starting the local stack in {state_dir} ...", fg="cyan")
    with LocalStack(settings) as stack:
        net = stack.network
        lock = threading.Lock()

        def say(line: str, **style) -> None:
            with lock:
                click.secho(f"{time.monotonic() - started:7.1f}s  {line}", **style)

        colour = {"red": "red", "yellow": "yellow", "green": "green"}
        server = ResponderServer({}, port=0)
        server.start()
        env = {**os.environ, "JW_RESPONDER_PORT": str(server.port)}
        routing = load_routing(settings.routing_file, net.regions, env=env)
        names = {r.id: r.name for r in routing.responders()}
        server.keys = responder_keys(routing, stack.secrets.webhook_key)
        server.on_alert = lambda item: say(
            describe(names[item.responder_id], item.alert) + f"  window end {_utc(item.alert['window_end'])}",
            fg=colour[item.alert["tier"]],
        )
        consoles = [
            ConsoleSubscriber.for_region(settings, stack.secrets, region, on_alert=lambda a, r=region: say(f"  (MQTT {r} console) {a['tier']} {a['station_id']} {a['parameter']}", dim=True)).start()
            for region in net.regions
        ]
        config = ScenarioConfig(seed=seed)
        say(f"network: {len(net.regions)} regions, {len(net.stations)} stations; faulty device clocks: {faulty_stations(net, config)}")
        with Services(settings, stack.secrets, net, routing) as services:
            say("bridge, router and sink running; Flink job starting (~15 s); simulator publishing at "
                f"{speed:.0f}x (episode from sim minute {config.plume_start_s / 60:.0f})", fg="cyan")
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
        for c in consoles:
            c.stop()
        server.stop()
        received = server.received.items()
        say(f"done: {len(received)} webhook deliveries; services errors: {services.errors or 'none'}")


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
