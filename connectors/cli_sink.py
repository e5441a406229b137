"""Command-line entry point: `sink` (Kafka aggregates and alerts -> InfluxDB)."""

from __future__ import annotations

from pathlib import Path

import click
from prometheus_client import start_http_server

from connectors.influx_sink import DEFAULT_GROUP_ID, InfluxSink
from jointwatch.cli_options import make_settings, namespace_option, stack_options, stop_on_signals
from jointwatch.stack.secrets import load_secrets


@click.command("sink")
@stack_options
@namespace_option
@click.option("--group-id", default=DEFAULT_GROUP_ID, show_default=True, help="Kafka consumer group.")
@click.option("--batch-size", default=500, show_default=True, help="Most messages per InfluxDB write.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
def sink(
    config_file: Path | None, state_dir: Path | None, port_base: int | None, namespace: str | None, group_id: str,
    batch_size: int, metrics_port: int | None,
) -> None:
    """Write one-minute and rolling-hour aggregates and alerts from Kafka to InfluxDB.

    Offsets are committed only after InfluxDB accepted the batch; while it is
    down the sink retries with backoff. Writes are upserts, so re-processing
    after a crash is harmless.
    """
    settings = make_settings(config_file, state_dir, port_base, namespace=namespace)
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1")
    InfluxSink.create(settings, load_secrets(settings.secrets_file), group_id=group_id, batch_size=batch_size).run(stop_on_signals())
