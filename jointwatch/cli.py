"""The `jointwatch` command line: one group, each command documented by --help."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from jointwatch.cli_options import make_settings, namespace_option, run_stage, stack_options, stop_on_signals
from schemas.errors import ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Logging verbosity.")
def main(log_level: str) -> None:
    """jointwatch: cross-region environmental monitoring and early warning.

    Edge devices publish over MQTT; a bridge forwards to Kafka; a Flink job aligns
    readings in event time and raises tiered alerts; the router delivers them to
    each region's responders; InfluxDB stores the series.
    """
    logging.basicConfig(level=log_level, format=LOG_FORMAT)


@main.group()
def stack() -> None:
    """Start, stop and inspect the local stack (Mosquitto, Kafka, InfluxDB)."""


def _stack(config_file, state_dir, port_base):
    from jointwatch.stack.local import LocalStack

    try:
        return LocalStack(make_settings(config_file, state_dir, port_base))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@stack.command("up")
@stack_options
def stack_up(config_file, state_dir, port_base) -> None:
    """Start every service not yet running; return once all are healthy."""
    from jointwatch.stack.processes import StackError

    st = _stack(config_file, state_dir, port_base)
    try:
        st.up()
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    _print_status(st)


@stack.command("down")
@stack_options
def stack_down(config_file, state_dir, port_base) -> None:
    """Stop every service of this state directory (no orphans left)."""
    stopped = _stack(config_file, state_dir, port_base).down()
    click.echo(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack.command("status")
@stack_options
def stack_status(config_file, state_dir, port_base) -> None:
    """Show each service's pid, health and ports; exit 1 unless all are healthy."""
    st = _stack(config_file, state_dir, port_base)
    if not _print_status(st):
        sys.exit(1)


def _print_status(st) -> bool:
    rows = st.status()
    for r in rows:
        ports = " ".join(f"{k}={v}" for k, v in r.ports.items())
        state = "healthy" if r.healthy else ("running, not answering" if r.pid else "stopped")
        click.echo(f"{r.name:<10} {state:<24} pid={r.pid or '-':<8} {ports}")
    click.echo(f"state: {st.settings.state_dir}")
    return all(r.healthy for r in rows)


@main.command("bridge")
@stack_options
@namespace_option
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT [default: port base + 900].")
def bridge_cmd(config_file, state_dir, port_base, namespace, metrics_port) -> None:
    """Run the MQTT -> Kafka bridge until Ctrl-C."""
    from prometheus_client import start_http_server

    from connectors.mqtt_bridge import MqttKafkaBridge
    from jointwatch.stack.secrets import load_secrets
    from schemas.network import load_network

    s = make_settings(config_file, state_dir, port_base, namespace=namespace)
    try:
        bridge = MqttKafkaBridge(s, load_network(s.network_file), load_secrets(s.secrets_file))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    start_http_server(metrics_port or s.port("metrics_port"), addr="127.0.0.1")
    bridge.run(stop_on_signals())


@main.command("indices")
@stack_options
@namespace_option
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
def indices_cmd(config_file, state_dir, port_base, namespace, metrics_port) -> None:
    """Run the index stage until Ctrl-C: station hours from the job -> real-time AQI / water class on jw.indices."""
    from jobs.index_stage import IndexStage

    run_stage(make_settings(config_file, state_dir, port_base, namespace=namespace), IndexStage, metrics_port)


@main.command("alert-stage")
@stack_options
@namespace_option
@click.option("--rules", "rules_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Tier rules file (default: config/tier_rules.yaml); later versions arrive on the control topic.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option("--apportionment/--no-apportionment", default=True, show_default=True,
              help="Name air alerts' origin (lead) and affected (assist) regions from jw.apportionment; "
                   "without it, the own region leads and downwind regions assist.")
def alert_stage_cmd(config_file, state_dir, port_base, namespace, rules_file, metrics_port, apportionment) -> None:
    """Run the alert stage until Ctrl-C: jw.indices (+ jw.apportionment) -> tier state machine -> jw.alerts
    (exactly once, state in jw.alerts.state); applies rules updates from jw.control.tier-rules without a restart."""
    from alerts.stage import AlertStage

    settings = make_settings(config_file, state_dir, port_base, namespace=namespace)
    run_stage(settings, lambda s, net: AlertStage(s, net, rules_file=rules_file, apportionment=apportionment), metrics_port)


@main.group()
def job() -> None:
    """The Flink alignment job (event-time windows, station hours)."""


@job.command("run", context_settings={"ignore_unknown_options": True})
@stack_options
@click.argument("job_args", nargs=-1, type=click.UNPROCESSED)
def job_run(config_file, state_dir, port_base, job_args) -> None:
    """Run the job on an embedded Flink MiniCluster (extra args go to jobs.pipeline; see `python -m jobs.pipeline -h`)."""
    from jobs.pipeline import main as job_main

    s = make_settings(config_file, state_dir, port_base)
    job_main(["--bootstrap", s.kafka_bootstrap, "--namespace", s.namespace, "--checkpoint-dir", str(s.state_dir / "checkpoints"), *job_args])


def _register_commands() -> None:
    from alerts.cli import responder, router
    from alerts.standards.cli import aqi_command, water_class_command
    from alerts.tiers.cli import rules
    from connectors.cli_sink import sink
    from jointwatch.demo import demo
    from simulator.cli import simulate

    for cmd in (simulate, router, sink, responder, demo, rules, aqi_command, water_class_command):
        main.add_command(cmd)


_register_commands()
from jointwatch.cli_calibration import calibration  # noqa: E402 - registered like _register_commands' groups
main.add_command(calibration)
from jointwatch.cli_apportion import register_apportion  # noqa: E402 - `apportion` and `apportion-stage`
register_apportion(main)
