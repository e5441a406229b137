"""What every `jointwatch` command that talks to the stack shares: the settings
options, loading them with a clean error, the topic namespace, and Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from jointwatch.settings import Settings, load_settings
from schemas.errors import ConfigError

if TYPE_CHECKING:
    from schemas.network import Network

F = TypeVar("F", bound=Callable[..., Any])


def stack_options(fn: F) -> F:
    """--config/--state-dir/--port-base."""
    fn = click.option("--port-base", type=int, default=None, help="Loopback port base of the stack [env JW_PORT_BASE; default 17000].")(fn)
    fn = click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="State directory, holds secrets.yaml [env JW_STATE_DIR; default .state/].")(fn)
    fn = click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Settings YAML (keys of jointwatch.settings.Settings).")(fn)
    return fn


namespace_option = click.option("--namespace", default=None, help="Kafka topic namespace (replays, tests). Default: none (production topics).")


def make_settings(config_file: Path | None, state_dir: Path | None, port_base: int | None, **extra: Any) -> Settings:
    try:
        return load_settings(config_file, state_dir=state_dir, port_base=port_base, **extra)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def stop_on_signals() -> threading.Event:
    """An event set by Ctrl-C or SIGTERM, so services finish what they hold and stop."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def run_stage(settings: Settings, build: Callable[[Settings, Network], Any], metrics_port: int | None) -> None:
    """Build a Kafka stage from the settings and the station registry (a config error is a clean
    CLI error), serve its metrics if asked, and run it until Ctrl-C."""
    from prometheus_client import start_http_server

    from schemas.network import load_network

    try:
        stage = build(settings, load_network(settings.network_file))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if metrics_port is not None:
        start_http_server(metrics_port, addr="127.0.0.1")
    stage.run(stop_on_signals())
