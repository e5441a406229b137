"""`jointwatch simulate`: run the station-network simulator against the local broker."""

from __future__ import annotations

import math
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import click

from calibration.registry import load_registry
from jointwatch.cli_options import stack_options
from jointwatch.settings import load_settings
from jointwatch.stack.secrets import load_secrets
from schemas.errors import ConfigError
from schemas.network import load_network
from simulator.publisher import DEFAULT_RATE, BrokerError, publish
from simulator.scenario import DEFAULT_CALIBRATION_FILE, ScenarioConfig, check_drift, faulty_stations, iter_device_steps
from simulator.sensors import SensorDrift, parse_drift

DEFAULT_START = "2026-11-22T00:00:00Z"
DRY_RUN_STEPS = 60


def _start_ms(value: str) -> int:
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not ISO-8601, e.g. {DEFAULT_START}", param_hint="--start") from None
    if t.tzinfo is None:  # a naive time is taken as UTC, never as this machine's zone
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def _drifts(specs: tuple[str, ...]) -> tuple[SensorDrift, ...]:
    out = []
    for spec in specs:
        try:
            out.append(parse_drift(spec))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--drift") from None
    return tuple(out)


@click.command("simulate")
@stack_options
@click.option("--host", default="127.0.0.1", show_default=True, help="MQTT broker host.")
@click.option("--network", "network_file", type=click.Path(dir_okay=False, path_type=Path), help="Station registry (default: the settings' network_file, config/network.yaml).")
@click.option("--seed", type=click.IntRange(min=0), default=ScenarioConfig.seed, show_default=True, help="Random seed: same seed and start => same readings, faults and payloads.")
@click.option("--start", default=DEFAULT_START, show_default=True, help="Sim time of step 0, ISO-8601 (naive = UTC).")
@click.option("--step-s", type=click.IntRange(min=1), default=ScenarioConfig.step_s, show_default=True, help="Sim seconds between two snapshots of a station.")
@click.option("--steps", type=click.IntRange(min=0), help="Number of sim steps to send (each: one snapshot per station). Default: until --duration or Ctrl-C.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Stop after this many wall-clock seconds.")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help=f"Pace by messages per wall second (default {DEFAULT_RATE:.0f} unless --speed).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), help="Pace by sim seconds per wall second, e.g. 60 = one sim minute per second.")
@click.option("--calibration", "calibration_file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_CALIBRATION_FILE,
              help="Calibration registry (default config/calibration.yaml): each sensor listed there sends the raw value that its model in effect at the reading's time maps back to what a reference analyzer would read.")
@click.option("--no-calibration", is_flag=True, help="Ignore the registry: every device sends the reference reading itself.")
@click.option("--drift", "drift_specs", multiple=True, metavar="STATION/PARAM:GAIN:DAYS[:START]",
              help="Let a sensor drift (repeatable): its raw output is multiplied by 1 + GAIN*clamp((t - START)/DAYS, 0, 1), "
                   "e.g. c-a11/pm25:0.2:14 = +20% over 14 days. START: ISO-8601 (naive = UTC) or epoch ms; default --start.")
@click.option("--dry-run", is_flag=True, help=f"Print the payloads as JSON lines to stdout instead of publishing (no broker; default {DRY_RUN_STEPS} steps).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def simulate(
    config_file: Path | None,
    state_dir: Path | None,
    port_base: int | None,
    host: str,
    network_file: Path | None,
    seed: int,
    start: str,
    step_s: int,
    steps: int | None,
    duration: float | None,
    rate: float | None,
    speed: float | None,
    calibration_file: Path,
    no_calibration: bool,
    drift_specs: tuple[str, ...],
    dry_run: bool,
    no_progress: bool,
) -> None:
    """Simulate the station network and publish it over MQTT, one client per station.

    31 air and 6 water stations in regions north, central and south (config/network.yaml;
    c-a11 is a low-cost pod beside the Hulín reference analyzer c-a01). About 40 sim
    minutes after --start an industrial plume from north drifts into central and a
    chemical spill enters the river in north and flows south (at 3 km/h). A few
    devices have clock faults (skewed clocks, local time without zone, epoch ms);
    they are listed on stderr at start.

    Low-cost sensors listed in the calibration registry send raw values (the
    pipeline's calibration turns them back into reference readings); --drift makes
    a sensor's raw output drift from its calibration, e.g. against a co-located
    reference.

    \b
    Examples:
      jointwatch simulate --speed 120                 # 2 sim minutes per second, until Ctrl-C
      jointwatch simulate --steps 600 --rate 500      # 10 sim hours as fast as 500 msg/s
      jointwatch simulate --dry-run --steps 2 | head  # look at the payloads
      jointwatch simulate --speed 240 --drift c-a11/pm25:0.2:14   # the Hulín pod drifts +20% over 14 days
    """
    if rate is not None and speed is not None:
        raise click.UsageError("give --rate or --speed, not both")
    try:
        settings = load_settings(config_file, state_dir=state_dir, port_base=port_base)
        network = load_network(network_file or settings.network_file)
        if not no_calibration:
            load_registry(calibration_file, network)  # every listed sensor must exist: say so now, not mid-run
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{calibration_file}: {exc.strerror}") from None
    drifts = _drifts(drift_specs)
    try:
        config = ScenarioConfig(seed=seed, start_ms=_start_ms(start), step_s=step_s,
                                calibration_file=None if no_calibration else calibration_file, drift=drifts)
        check_drift(network, config)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--drift") from None
    faults = faulty_stations(network, config)
    click.echo("clock faults: " + ", ".join(f"{sid} {what}" for sid, what in sorted(faults.items())), err=True)

    if dry_run:
        n = steps if steps is not None else (math.ceil(duration * speed / step_s) if duration and speed else DRY_RUN_STEPS)
        out = sys.stdout.buffer
        try:
            for _, messages in iter_device_steps(network, config, 0, n):
                out.writelines(payload + b"\n" for _, payload in messages)
            out.flush()
        except BrokenPipeError:  # e.g. piped into `head`: the reader has all it wanted
            sys.stdout = None  # type: ignore[assignment]  # no second error when Python flushes at exit
        return

    try:
        secrets = load_secrets(settings.secrets_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # finish cleanly: wait for the PUBACKs of what was sent

    in_main = threading.current_thread() is threading.main_thread()  # signals can only be set there
    previous = signal.signal(signal.SIGINT, on_signal) if in_main else None
    try:
        stats = publish(
            network,
            config,
            secrets=secrets,
            host=host,
            port=settings.mqtt_port,
            steps=steps,
            duration_s=duration,
            rate=rate,
            speed=speed,
            stop=stop,
            progress=not no_progress and sys.stderr.isatty(),
            secrets_hint=str(settings.secrets_file),
        )
    except BrokerError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    click.echo(f"published {stats.published} messages ({stats.steps} sim steps) in {stats.elapsed_s:.1f} s, {stats.acked} acknowledged", err=True)
    if stats.acked < stats.published:
        raise click.ClickException(f"{stats.published - stats.acked} messages were not acknowledged by the broker")
