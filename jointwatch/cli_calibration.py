"""`jointwatch calibration …`: check a calibration registry file and see which model applies when;
publish it to jw.control.calibration (`apply`); list drift proposals and accept one; run the drift stage.

Pure decisions live in calibration/control.py (immutability, backdating, stale proposals),
Kafka I/O in calibration/control_topic.py; this module only parses options and prints."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import click

from calibration.registry import ModelVersion, Registry, epoch_ms, load_registry
from jointwatch.cli_options import make_settings, namespace_option, run_stage, stack_options
from schemas.errors import ConfigError
from schemas.network import load_network
from schemas.topics import CALIBRATION, namespaced

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
    """Calibration registry: validate a registry file, show which model version applies when, publish it
    (apply), review and accept drift proposals (proposals, accept), run the drift stage (drift-stage)."""


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
    _echo_drift(file, network_file)


def _echo_drift(file: Path, network_file: Path) -> None:
    """The drift section: its settings and which reference each low-cost sensor is compared with."""
    from calibration.drift_config import load_drift

    try:
        cfg, pairs = load_drift(file, load_network(network_file))
    except ConfigError as exc:
        _fail(str(exc))
    st = cfg.settings
    click.echo(f"\ndrift: bins of {st.bin_minutes} min (valid with >= {cfg.min_minutes_per_bin} min), window {st.window_bins} bins "
               f"(>= {st.min_bins} valid), evaluated every {cfg.every_bins} bins; drift beyond gain ±{st.gain_tolerance:g} or "
               f"offset ±{st.offset_tolerance:g} with r2 >= {st.min_r2:g} ({st.method}); pairs within {cfg.max_distance_km:g} km:")
    listed = set(_load(file, network_file).sensors)
    rows = [(p.sensor, p.reference_station_id, f"{p.distance_km:.2f}", p.basis) for p in pairs]
    rows += [(k, "-", "-", "no reference in range: not watched") for k in sorted(listed - {p.sensor for p in pairs})]
    click.echo(_table(("sensor", "reference", "km", "pairing"), rows))


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


# --- the registry on Kafka: apply, proposals, accept ---------------------------------------


def _fail(message: str) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(1)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _entry_text(v: ModelVersion) -> str:
    return f"v{v.version} {v.model_id} {_describe(v)} from {_iso(v.effective_from)}"


def _yaml_entry(v: ModelVersion) -> str:
    """The version as an entry to paste under the sensor's `models:` in the registry file."""
    import yaml

    entry = {"model_id": v.model_id, "version": v.version, "effective_from": _iso(v.effective_from),
             "type": v.model.kind, "coefficients": v.model.coefficients(), "description": v.description}
    return yaml.safe_dump([entry], sort_keys=False, allow_unicode=True, width=1000).rstrip()


def _read_registry(settings: Any) -> Any:
    from calibration.control_topic import read_registry

    try:
        current = read_registry(settings.kafka_bootstrap, settings.namespace)
    except Exception as exc:  # noqa: BLE001 - Kafka errors of any kind become a clean CLI error
        raise click.ClickException(f"cannot read the registry from Kafka at {settings.kafka_bootstrap}: {exc}") from None
    for problem in current.invalid:
        click.echo(f"warning: not a valid calibration message on the topic, treated as absent: {problem}", err=True)
    return current


def _publish(settings: Any, messages: list[Any]) -> None:
    from calibration.control_topic import publish

    try:
        publish(settings.kafka_bootstrap, messages, settings.namespace)
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"publishing to Kafka failed: {exc}") from None


@calibration.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@network_option
@click.option("--dry-run", is_flag=True, help="Validate and show what would be published; publish nothing.")
@click.option("--backdate", is_flag=True,
              help="Allow new versions whose effective_from is already past. The running job applies a version to the readings it "
                   "calibrates after it has loaded it, so a backdated version reaches earlier readings only when they are replayed.")
@stack_options
@namespace_option
def apply(file: Path, network_file: Path, dry_run: bool, backdate: bool, config_file, state_dir, port_base, namespace) -> None:
    """Validate registry FILE and publish its changes to jw.control.calibration, one message per changed sensor
    (its whole version history). The running job picks them up without a restart.

    FILE is merged with what the topic already holds (read to its end). Versions are immutable: for every
    sensor FILE lists, each version on the topic must be in FILE unchanged, and new versions come after the
    latest; sensors FILE does not list are left as they are. A new version effective before now needs
    --backdate. Exits 1 with the reasons when FILE is invalid or a change is refused.
    """
    from calibration.control import ChangeRefused, plan_apply, sensor_message

    wanted = _load(file, network_file)
    settings = make_settings(config_file, state_dir, port_base, namespace=namespace)
    current = _read_registry(settings)
    try:
        changes = plan_apply(wanted, current.registry, _now_ms(), backdate)
    except ChangeRefused as exc:
        _fail(f"{file}: refused, nothing published:\n" + "\n".join(f"  - {r}" for r in exc.reasons))
    topic = namespaced(CALIBRATION, settings.namespace)
    click.echo(f"{file}: registry {wanted.registry_id}, {len(wanted.sensors)} sensors; {topic} holds {len(current.registry.sensors)} sensors")
    if not changes:
        click.echo("nothing to publish: the topic already holds every version of FILE")
        return
    if not dry_run:
        _publish(settings, [sensor_message(wanted.registry_id, c.sensor) for c in changes])
    verb = "would publish" if dry_run else "published"
    for c in changes:
        v = c.sensor.versions
        click.echo(f"{verb} {c.sensor.key}: versions {v[0].version}..{v[-1].version}{' (new sensor)' if c.new_sensor else ''}; new: "
                   + "; ".join(_entry_text(a) for a in c.added))
    untouched = len(set(current.registry.sensors) - {c.sensor.key for c in changes})
    click.echo(f"unchanged on the topic: {untouched} sensors" + (" (dry run: nothing published)" if dry_run else ""))


def _gain_offset(p: dict[str, Any]) -> str:
    return f"{p['gain']:.3f} / {p['offset']:+.2f}"


@calibration.command("proposals")
@click.option("--sensor", default=None, metavar="STATION/PARAMETER", help="Only this sensor's proposals (e.g. n-a03/pm25).")
@click.option("--all", "show_all", is_flag=True, help="Also accepted and superseded proposals (default: pending only).")
@stack_options
@namespace_option
def proposals(sensor: str | None, show_all: bool, config_file, state_dir, port_base, namespace) -> None:
    """List the drift stage's calibration proposals from jw.calibration.proposals with their status
    against the current registry: pending, accepted (its model is a version of the sensor), or
    superseded (the sensor's model changed since, or a later proposal exists).

    drift: gain / offset of the currently calibrated values against the reference over the window;
    proposed: the linear correction of raw values that would replace the current model.
    """
    from calibration.control import proposal_status
    from calibration.control_topic import read_proposals

    settings = make_settings(config_file, state_dir, port_base, namespace=namespace)
    current = _read_registry(settings)
    try:
        found, bad = read_proposals(settings.kafka_bootstrap, settings.namespace)
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"cannot read proposals from Kafka at {settings.kafka_bootstrap}: {exc}") from None
    newest: dict[str, int] = {}
    for p in found:
        newest[p["sensor"]] = max(newest.get(p["sensor"], p["window_end"]), p["window_end"])
    rows = []
    for p in sorted(found, key=lambda p: (p["window_end"], p["sensor"])):
        status = proposal_status(p, current.registry, newest[p["sensor"]])
        if (sensor is not None and p["sensor"] != sensor) or (not show_all and status != "pending"):
            continue
        c = p["proposed"]["coefficients"]
        rows.append((p["proposal_id"], p["sensor"], p["reference_station_id"], f"{_iso(p['window_start'])} .. {_iso(p['window_end'])}",
                     _gain_offset(p["drift"]), _gain_offset(c) if p["proposed"]["type"] == "linear" else p["proposed"]["type"],
                     f"{p['fit']['r2']:.3f}", str(p["fit"]["n"]), status))
    if bad:
        click.echo(f"warning: {bad} messages on the proposals topic are not valid proposals (skipped)", err=True)
    if not rows:
        what = "no proposals" if show_all else "no pending proposals"
        hint = "" if show_all else " (--all also lists accepted and superseded ones)"
        click.echo(what + (f" for {sensor}" if sensor else "") + hint)
        return
    click.echo(_table(("id", "sensor", "reference", "window", "drift gain/offset", "proposed gain/offset", "r2", "n", "status"), rows))


@calibration.command("accept")
@click.argument("proposal_id", metavar="ID")
@click.option("--effective-from", default=None, metavar="ISO-8601",
              help="Event time from which the new version applies, with zone. Default: now, rounded up to the next whole minute.")
@click.option("--backdate", is_flag=True,
              help="Allow an --effective-from in the past: the running job applies it only to readings it calibrates after "
                   "loading it; earlier readings get it only when replayed.")
@click.option("--dry-run", is_flag=True, help="Check and show the new version; publish nothing.")
@stack_options
@namespace_option
def accept(proposal_id: str, effective_from: str | None, backdate: bool, dry_run: bool, config_file, state_dir, port_base, namespace) -> None:
    """Accept drift proposal ID (or a unique prefix of it): append its linear model as the sensor's next
    version on jw.control.calibration and print that version (also as YAML to add to the registry file,
    so a later `apply` of the file keeps it).

    Refused (exit 1) when the proposal is stale: the sensor's latest version is no longer the one it was
    fitted to replace (another version was published or accepted since).
    """
    from calibration.control import ChangeRefused, accept_proposal, next_minute, sensor_message
    from calibration.control_topic import read_proposals

    now = _now_ms()
    if effective_from is None:
        eff = next_minute(now)
    else:
        try:
            eff = epoch_ms(effective_from, "--effective-from", "value")
        except ConfigError as exc:
            raise click.BadParameter(exc.reason, param_hint="--effective-from") from None
    settings = make_settings(config_file, state_dir, port_base, namespace=namespace)
    try:
        found, _ = read_proposals(settings.kafka_bootstrap, settings.namespace)
    except Exception as exc:  # noqa: BLE001
        raise click.ClickException(f"cannot read proposals from Kafka at {settings.kafka_bootstrap}: {exc}") from None
    matches = [p for p in found if p["proposal_id"] == proposal_id] or [p for p in found if p["proposal_id"].startswith(proposal_id)]
    if len(matches) != 1:
        _fail(f"no proposal {proposal_id!r} on the proposals topic" if not matches
              else f"{proposal_id!r} matches {len(matches)} proposals: {', '.join(p['proposal_id'] for p in matches)}")
    proposal = matches[0]
    current = _read_registry(settings)
    try:
        history = accept_proposal(proposal, current.registry, eff, now, backdate)
    except ChangeRefused as exc:
        _fail("refused, nothing published: " + "\n".join(exc.reasons))
    registry_id = current.registry_ids.get(proposal["sensor"], "drift-proposals")
    if not dry_run:
        _publish(settings, [sensor_message(registry_id, history)])
    new = history.versions[-1]
    click.echo(f"{'would publish' if dry_run else 'published'} {history.key} {_entry_text(new)}"
               f" (replaces {'v' + str(history.versions[-2].version) if len(history.versions) > 1 else 'no model'})")
    click.echo(f"add it to the registry file under {history.key}'s models:")
    click.echo(_yaml_entry(new))


@calibration.command("drift-stage")
@click.option("--calibration", "calibration_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Registry file whose `sensors` are the low-cost sensors and whose `drift:` section configures the stage "
                   "[default: config/calibration.yaml].")
@click.option("--group-id", default="jw-drift-stage", show_default=True, help="Kafka consumer group (its commits hold the restart point).")
@stack_options
@namespace_option
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT.")
def drift_stage(calibration_file: Path | None, group_id: str, config_file, state_dir, port_base, namespace, metrics_port) -> None:
    """Run the drift stage until Ctrl-C: station minutes (jw.readings.station1m) -> per low-cost sensor and
    reference pair, bins and a rolling fit in event time -> proposals on jw.calibration.proposals. It never
    changes the registry; see `calibration proposals` and `calibration accept`."""
    from calibration.drift_config import load_drift
    from calibration.drift_stage import DriftStage

    file = calibration_file or DEFAULT_NETWORK.parent / "calibration.yaml"

    def build(settings: Any, network: Any) -> DriftStage:
        cfg, pairs = load_drift(file, network)
        return DriftStage(settings, network, cfg, pairs, group_id=group_id)

    run_stage(make_settings(config_file, state_dir, port_base, namespace=namespace), build, metrics_port)
