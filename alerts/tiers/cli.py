"""`jointwatch rules …`: check tier rule files before they are published."""

from __future__ import annotations

import sys
from pathlib import Path

from datetime import datetime

import click

from alerts.tiers.rules import CLASS_NAMES, AirRule, Band, HealthRule, Hold, Persistence, RegionLevel, RegionRules, RuleSet, WaterRule, load_rules
from jointwatch.cli_options import make_settings, namespace_option, stack_options
from schemas.errors import ConfigError, read_yaml
from schemas.network import Network, load_network

DEFAULT_NETWORK = Path(__file__).resolve().parents[2] / "config" / "network.yaml"


@click.group("rules")
def rules() -> None:
    """Tier rules per region: validate a rules file and show what it means."""


@rules.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--network", "network_file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_NETWORK,
    show_default="config/network.yaml", help="Station registry the rules must cover (regions, water stations).",
)
def validate(file: Path, network_file: Path) -> None:
    """Validate tier rules FILE and print the effective rules of every region.

    Exits 1 with `file: key: reason` on the first error.
    """
    try:
        network = load_network(network_file)
        rule_set = load_rules(file, network)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    click.echo(summary(rule_set, network))


@rules.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--effective-from", default=None, metavar="ISO-8601",
              help="Event time from which the rules apply, with zone (e.g. 2026-11-22T18:00:00+01:00). Default: the alert stage's current event time.")
@stack_options
@namespace_option
def publish(file: Path, effective_from: str | None, config_file, state_dir, port_base, namespace) -> None:
    """Validate rules FILE and publish it on the control topic: the running alert stage applies
    it without a restart (its version must be higher than the running rules')."""
    from alerts.stage import publish_rules

    settings = make_settings(config_file, state_dir, port_base, namespace=namespace)
    try:
        rule_set = load_rules(file, load_network(settings.network_file))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    publish_rules(settings, read_yaml(file), _epoch_ms(effective_from) if effective_from else None)
    when = effective_from or "the stage's current event time"
    click.echo(f"published rule set {rule_set.rule_set_id} v{rule_set.version} from {file}, effective from {when}")


def _epoch_ms(text: str) -> int:
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not ISO-8601: {text!r}", param_hint="--effective-from") from None
    if t.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no zone offset (e.g. +01:00 or Z)", param_hint="--effective-from")
    return int(t.timestamp() * 1000)


def summary(rs: RuleSet, network: Network) -> str:
    """Human-readable effective rules, one block per region."""
    default = " (+ default)" if rs.default is not None else ""
    lines = [f"{rs.source}: rule set {rs.rule_set_id} version {rs.version}, {len(rs.regions)} regions{default}"]
    for region, rr in rs.regions.items():
        lines.append(f"{region}:")
        lines += [f"  {line}" for line in _region(rr, network)]
    return "\n".join(lines)


def _region(rr: RegionRules, network: Network) -> list[str]:
    return [*_air(rr.air), *_water(rr.water, rr.region, network), *_health(rr.health)]


def _air(rule: AirRule | None) -> list[str]:
    if rule is None:
        return ["air: off"]
    return [f"air: {rule.indicator} {_bands(rule.bands)}; {_hold(rule.hold)}{_level(rule.region_level)}"]


def _water(rule: WaterRule | None, region: str, network: Network) -> list[str]:
    if rule is None:
        return ["water: off"]
    sections = [s.id for s in network.stations.values() if s.region == region and s.medium == "water"]
    targets = ", ".join(f"{s} {CLASS_NAMES[rule.target_for(s)]}" for s in sections) or "no sections"
    tiers = ", ".join(
        f"{b.tier} worse by {b.worse_by}" + (f" or {CLASS_NAMES[b.or_class]}" if b.or_class else "") + _persist(b.persistence)
        for b in rule.class_bands
    )
    out = [f"water: class vs target ({targets}): {tiers}; {_hold(rule.hold)}{_level(rule.region_level)}"]
    for j in rule.jumps.values():
        out.append(f"water: {j.parameter} {j.rise} rise in {j.window_ms // 60000} min {_bands(j.bands)}; {_hold(j.hold)}")
    return out


def _health(rule: HealthRule | None) -> list[str]:
    if rule is None:
        return ["health: off"]
    return [f"health: {rule.tier} when silent {rule.silent_ms // 60000} min + {rule.pending_ms // 60000} pending; {_hold(rule.hold)}{_level(rule.region_level)}"]


def _bands(bands: tuple[Band, ...]) -> str:
    return ", ".join(f"{b.tier} >{b.enter_above:g} / <{b.exit_below:g}{_persist(b.persistence)}" for b in bands)


def _persist(p: Persistence) -> str:
    return "" if p == Persistence() else f" for {p.describe()}"


def _hold(h: Hold) -> str:
    return f"dwell {h.min_dwell_ms // 60000} min, exit after {h.exit_persistence.describe().replace('immediately', '1 obs')}"


def _level(rl: RegionLevel | None) -> str:
    if rl is None:
        return ""
    parts = ([f">= {rl.min_stations} stations"] if rl.min_stations else []) + ([f">= {rl.min_fraction:.0%}"] if rl.min_fraction else [])
    return f"; region when {' and '.join(parts)}"
