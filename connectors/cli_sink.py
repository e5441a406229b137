"""Command-line entry point: `sink` (Kafka aggregates and alerts -> InfluxDB)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import click
from prometheus_client import start_http_server

from connectors.influx_sink import DEFAULT_GROUP_ID, InfluxSink
from jointwatch.settings import load_settings
from jointwatch.stack.secrets import load_secrets


@click.command("sink")
@click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="State directory of the local stack (secrets.yaml lives there). Default: JW_STATE_DIR or .state/",
)
@click.option("--port-base", type=int, default=None, help="Port base of the local stack. Default: JW_PORT_BASE or 17000.")
@click.option("--namespace", default=None, help="Kafka topic namespace (replays, tests). Default: none (production topics).")
@click.option("--group-id", default=DEFAULT_GROUP_ID, show_default=True, help="Kafka consumer group.")
@click.option("--batch-size", default=500, show_default=True, help="Most messages per InfluxDB write.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
@click.option("--log-level", default="INFO", show_default=True, type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Logging verbosity.")
def sink(
    state_dir: Path | None, port_base: int | None, namespace: str | None, group_id: str, batch_size: int,
    metrics_port: int | None, log_level: str,
) -> None:
    """Write one-minute and rolling-hour aggregates and alerts from Kafka to InfluxDB.

    Offsets are committed only after InfluxDB accepted the batch; while it is
    down the sink retries with backoff. Writes are upserts, so re-processing
    after a crash is harmless.
    """
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings(state_dir=state_dir, port_base=port_base)
    if namespace:
        settings = settings.with_(namespace=namespace)
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    InfluxSink.create(settings, load_secrets(settings.secrets_file), group_id=group_id, batch_size=batch_size).run(stop)
