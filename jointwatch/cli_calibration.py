"""`jointwatch calibration …`: check a calibration registry file and see which model applies when."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

import click

from calibration.registry import ModelVersion, Registry, epoch_ms, load_registry
from schemas.errors import ConfigError
from schemas.network import load_network

DEFAULT_NETWORK = Path(__file__).resolve().parents[1] / "config" / "network.yaml"
network_option = click.option(
    "--network", "network_file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_NETWORK,
    show_default="config/network.yaml", help="Station registry the sensors must exist in (stations, parameters, covariates).",
)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _load(file: Path, network_file: Path) -> Registry:
    try:
        return load_registry(file, load_network(network_file))
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def _describe(v: ModelVersion) -> str:
    coeffs = v.model.coefficients()
    return v.model.kind + (f" {coeffs}" if coeffs else "")


@click.group("calibration")
def calibration() -> None:
    """Calibration registry: validate a registry file, show which model version applies when."""


@calibration.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@network_option
def validate(file: Path, network_file: Path) -> None:
    """Validate registry FILE and print every sensor's model versions with the time span each is in effect.

    Exits 1 with `file: key: reason` on the first error.
    """
    reg = _load(file, network_file)
    rows = []
    for s in reg.sensors.values():
        for i, v in enumerate(s.versions):
            until = _iso(s.versions[i + 1].effective_from) if i + 1 < len(s.versions) else "-"
            rows.append((s.key, str(v.version), v.model_id, _iso(v.effective_from), until, _describe(v)))
    click.echo(f"{reg.source}: registry {reg.registry_id}, {len(reg.sensors)} sensors, {len(reg.entries)} model versions, "
               f"unlisted sensors: {reg.unlisted}")
    click.echo(_table(("sensor", "version", "model_id", "effective_from", "until", "model"), rows))


@calibration.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--at", "at", required=True, metavar="ISO-8601",
              help="Event time with zone (e.g. 2026-09-01T00:00:00+02:00): show the version each sensor applies then.")
@network_option
def show(file: Path, at: str, network_file: Path) -> None:
    """Show which model version of registry FILE applies to each sensor at one event time."""
    try:
        t = epoch_ms(at, "--at", "value")
    except ConfigError as exc:
        raise click.BadParameter(exc.reason, param_hint="--at") from None
    reg = _load(file, network_file)
    rows = []
    for key, v in reg.at(t).items():
        if v is None:
            rows.append((key, "-", "-", "-", "none in effect: calibration missing"))
        else:
            rows.append((key, str(v.version), v.model_id, _iso(v.effective_from), _describe(v)))
    click.echo(f"at {_iso(t)} ({t} ms):")
    click.echo(_table(("sensor", "version", "model_id", "effective_from", "model"), rows))
