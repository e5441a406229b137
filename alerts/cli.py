"""Command-line entry points: `router` (the alert router) and `responder` (the demo responder)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from prometheus_client import start_http_server

from alerts.channels import responder_keys
from alerts.responder import ConsoleSubscriber, Received, ResponderServer, describe
from alerts.router import DEFAULT_GROUP_ID, AlertRouter, RetryPolicy
from alerts.routing import Routing, load_routing
from jointwatch.cli_options import make_settings, namespace_option, stack_options, stop_on_signals
from jointwatch.settings import Settings
from jointwatch.stack.secrets import Secrets, load_secrets
from schemas.network import load_network

DEFAULT_RESPONDER_PORT = 17095  # the default of ${JW_RESPONDER_PORT:-17095} in config/routing.yaml

routing_option = click.option(
    "--routing", "routing_file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
    help="Routing table. Default: config/routing.yaml.",
)


def _load(config_file: Path | None, state_dir: Path | None, port_base: int | None, routing_file: Path | None) -> tuple[Settings, Secrets, Routing]:
    settings = make_settings(config_file, state_dir, port_base, routing_file=routing_file)
    network = load_network(settings.network_file)
    return settings, load_secrets(settings.secrets_file), load_routing(settings.routing_file, network.regions)


@click.command("router")
@stack_options
@routing_option
@namespace_option
@click.option("--group-id", default=DEFAULT_GROUP_ID, show_default=True, help="Kafka consumer group.")
@click.option("--max-attempts", default=RetryPolicy.max_attempts, show_default=True, help="Attempts per delivery before dead-lettering.")
@click.option("--max-retry-seconds", default=RetryPolicy.max_total_s, show_default=True, help="Time budget per delivery, retries included.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
def router(
    config_file: Path | None, state_dir: Path | None, port_base: int | None, routing_file: Path | None, namespace: str | None,
    group_id: str, max_attempts: int, max_retry_seconds: float, metrics_port: int | None,
) -> None:
    """Route alerts from Kafka jw.alerts to each region's MQTT feed and webhook responders.

    The origin region gets the alert as lead, affected regions as assist. An
    alert's offset is committed only once every delivery was acknowledged or,
    after its retries, written to jw.alerts.undeliverable with the reason.
    """
    settings, secrets, routing = _load(config_file, state_dir, port_base, routing_file)
    if namespace:
        settings = settings.with_(namespace=namespace)
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1")
    retry = RetryPolicy(max_attempts=max_attempts, max_total_s=max_retry_seconds)
    AlertRouter.create(settings, secrets, routing, group_id=group_id, retry=retry).run(stop_on_signals())


@click.command("responder")
@stack_options
@routing_option
@click.option(
    "--port", type=int, envvar="JW_RESPONDER_PORT", default=DEFAULT_RESPONDER_PORT, show_default=True,
    help="Port on 127.0.0.1 (env JW_RESPONDER_PORT, which also fills the webhook URLs of config/routing.yaml).",
)
@click.option("--console/--no-console", default=False, help="Also print every region's MQTT alert feed, read as that region's console user.")
def responder(config_file: Path | None, state_dir: Path | None, port_base: int | None, routing_file: Path | None, port: int, console: bool) -> None:
    """Run the demo responders: verify signed webhooks and print each alert for its desk."""
    settings, secrets, routing = _load(config_file, state_dir, port_base, routing_file)
    names = {r.id: r.name for r in routing.responders()}

    def show(item: Received) -> None:
        click.echo(describe(names[item.responder_id], item.alert))

    def console_printer(region: str) -> Callable[[dict[str, Any]], None]:
        return lambda alert: click.echo(describe(f"{region} console", alert))

    consoles = [
        ConsoleSubscriber.for_region(settings, secrets, region, on_alert=console_printer(region)) for region in routing.regions
    ] if console else []
    stop = stop_on_signals()
    with ResponderServer(responder_keys(routing, secrets.webhook_key), port=port, on_alert=show) as server:
        for sub in consoles:
            sub.start()
        click.echo(f"responders {sorted(names)} listening on http://127.0.0.1:{server.port}/hooks/<id>")
        try:
            stop.wait()
        finally:
            for sub in consoles:
                sub.stop()
