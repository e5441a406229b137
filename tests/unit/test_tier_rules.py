"""Tier rules: the shipped file loads, every error names file, key and reason, the CLI validates."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from alerts.tiers.cli import rules as rules_cli
from alerts.tiers.rules import Persistence, load_rules, parse_rules
from schemas.errors import ConfigError
from schemas.network import load_network, parse_network

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "config" / "tier_rules.yaml"

NETWORK_DOC: dict[str, Any] = {
    "version": 1,
    "regions": [{"id": "north", "timezone": "UTC"}, {"id": "south", "timezone": "UTC"}],
    "stations": [
        {"id": "n-a01", "region": "north", "medium": "air", "lat": 1, "lon": 1, "parameters": ["pm25"]},
        {"id": "n-w01", "region": "north", "medium": "water", "lat": 1, "lon": 1, "river_km": 0, "parameters": ["nh3n"]},
        {"id": "s-w01", "region": "south", "medium": "water", "lat": 1, "lon": 1, "river_km": 9, "parameters": ["nh3n"]},
    ],
}
NET = parse_network(NETWORK_DOC, Path("net.yaml"))

BASE: dict[str, Any] = {
    "version": 3,
    "rule_set_id": "test-rules",
    "regions": {
        "default": {
            "air": {
                "tiers": {"yellow": {"enter_above": 150, "exit_below": 130}, "red": {"enter_above": 200, "exit_below": 180}},
                "min_dwell_minutes": 60,
            },
            "water": {
                "target_class": "III",
                "tiers": {"yellow": {"worse_by": 1}, "red": {"worse_by": 2, "or_class": "worse_than_V"}},
                "jumps": {"nh3n": {"window_minutes": 60, "rise": "absolute", "tiers": {"yellow": {"enter_above": 0.5, "exit_below": 0.2}}}},
            },
            "health": {"silent_minutes": 30, "pending_minutes": 10},
        },
        "north": {},
    },
}


def doc_with(path: str, value: Any) -> dict[str, Any]:
    """BASE with one dotted path set (value DELETE removes the key)."""
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node.setdefault(p, {})
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


DELETE = object()
D = "regions.default"


def test_shipped_rules_cover_every_region_of_the_shipped_network() -> None:
    network = load_network(REPO / "config" / "network.yaml")
    rs = load_rules(SHIPPED, network)
    assert rs.rule_set_id and rs.version >= 1
    assert set(rs.regions) == set(network.regions)
    for region, rr in rs.regions.items():
        assert rr.air is not None and rr.water is not None and rr.health is not None, region
        air = rr.air.bands
        assert [b.tier for b in air] == ["yellow", "red"]
        assert all(b.exit_below < b.enter_above for b in air)
    north = rs.regions["north"].air
    assert north is not None and north.bands[1].persistence == Persistence(1, 120 * 60_000)  # AQI > 200 for >= 2 h
    central = rs.regions["central"].water
    assert central is not None and central.target_for("c-w01") == 2 and central.target_for("c-w02") == 3


def test_parse_from_a_message_body_names_the_source() -> None:
    rs = parse_rules(copy.deepcopy(BASE), NET, "kafka:jw.control.rules@7")
    assert (rs.rule_set_id, rs.version, rs.source) == ("test-rules", 3, "kafka:jw.control.rules@7")
    # south has no section: it gets the default
    south, default = rs.regions["south"], rs.default
    assert default is not None and (south.air, south.water, south.health) == (default.air, default.water, default.health)
    assert south.air is not None
    with pytest.raises(ConfigError) as info:
        parse_rules(doc_with("version", "3"), NET, "kafka:jw.control.rules@8")
    assert (info.value.file, info.value.key) == ("kafka:jw.control.rules@8", "version")


ERRORS = [
    (doc_with("version", 0), "version", "positive integer"),
    (doc_with("rule_set_id", DELETE), "rule_set_id", "must be a string"),
    (doc_with("color", "red"), "color", "unknown key"),
    (doc_with("regions.west", {}), "regions.west", "unknown region"),
    (doc_with(f"{D}.air.tiers.red.exit_below", 200), f"{D}.air.tiers.red.exit_below", "must be below the enter threshold"),
    (doc_with(f"{D}.air.tiers.red.exit_below", 210), f"{D}.air.tiers.red.exit_below", "must be below the enter threshold"),
    (doc_with(f"{D}.air.tiers.red", {"enter_above": 140, "exit_below": 135}), f"{D}.air.tiers.red.enter_above", "must be above yellow's"),
    (doc_with(f"{D}.air.tiers.red", {"enter_above": 210, "exit_below": 120}), f"{D}.air.tiers.red.exit_below", "must be above yellow's"),
    (doc_with(f"{D}.air.tiers.orange", {"enter_above": 170, "exit_below": 160}), f"{D}.air.tiers.orange", "unknown tier"),
    (doc_with(f"{D}.air.tiers.green", {"enter_above": 1, "exit_below": 0}), f"{D}.air.tiers.green", "unknown tier"),
    (doc_with(f"{D}.air.tiers.red.enter_above", "high"), f"{D}.air.tiers.red.enter_above", "must be a number"),
    (doc_with(f"{D}.air.tiers.red.enter_above", DELETE), f"{D}.air.tiers.red.enter_above", "is required"),
    (doc_with(f"{D}.air.min_dwell_minutes", -5), f"{D}.air.min_dwell_minutes", "non-negative"),
    (doc_with(f"{D}.air.persistence", {"minutes": -1}), f"{D}.air.persistence.minutes", "non-negative"),
    (doc_with(f"{D}.air.persistence", {"observations": 0}), f"{D}.air.persistence.observations", ">= 1"),
    (doc_with(f"{D}.air.persistence", {"hours": 2}), f"{D}.air.persistence.hours", "unknown key"),
    (doc_with(f"{D}.air.tiers.red.enter_category", "heavy"), f"{D}.air.tiers.red.enter_category", "not both"),
    (doc_with(f"{D}.air.tiers.yellow", {"enter_category": "awful", "exit_below": 1}), f"{D}.air.tiers.yellow.enter_category", "unknown AQI category"),
    (doc_with(f"{D}.air.min_dwel_minutes", 5), f"{D}.air.min_dwel_minutes", "unknown key"),
    (doc_with(f"{D}.air.region_level", {"min_fraction": 1.5}), f"{D}.air.region_level.min_fraction", "(0, 1]"),
    (doc_with(f"{D}.air.region_level", {"min_dwell_minutes": 5}), f"{D}.air.region_level", "min_stations and/or min_fraction"),
    (doc_with(f"{D}.air.region_level", {"min_stations": 0}), f"{D}.air.region_level.min_stations", ">= 1"),
    (doc_with(f"{D}.water.target_class", "VI"), f"{D}.water.target_class", "unknown water class"),
    (doc_with(f"{D}.water.target_class", "worse_than_V"), f"{D}.water.target_class", "I..V"),
    (doc_with(f"{D}.water.target_class", DELETE), f"{D}.water.target_class", "is required"),
    (doc_with(f"{D}.water.tiers.red.worse_by", 1), f"{D}.water.tiers.red.worse_by", "must be above yellow's"),
    (doc_with(f"{D}.water.tiers.yellow.worse_by", 0), f"{D}.water.tiers.yellow.worse_by", ">= 1"),
    (doc_with(f"{D}.water.station_targets", {"x-w99": "II"}), f"{D}.water.station_targets.x-w99", "unknown station"),
    (doc_with(f"{D}.water.station_targets", {"n-a01": "II"}), f"{D}.water.station_targets.n-a01", "not a water section"),
    (doc_with("regions.north.water", {"station_targets": {"s-w01": "II"}}), "regions.north.water.station_targets.s-w01", "is in region 'south'"),
    (doc_with(f"{D}.water.jumps.pm25", {"window_minutes": 60, "rise": "absolute", "tiers": {"yellow": {"enter_above": 1, "exit_below": 0}}}), f"{D}.water.jumps.pm25", "unknown water parameter"),
    (doc_with(f"{D}.water.jumps.nh3n.rise", "fast"), f"{D}.water.jumps.nh3n.rise", "'absolute'"),
    (doc_with(f"{D}.water.jumps.nh3n.window_minutes", 0), f"{D}.water.jumps.nh3n.window_minutes", "positive"),
    (doc_with(f"{D}.water.jumps.nh3n.tiers.yellow.exit_below", -0.1), f"{D}.water.jumps.nh3n.tiers.yellow.exit_below", "not be negative"),
    (doc_with(f"{D}.health.silent_minutes", 0), f"{D}.health.silent_minutes", "positive"),
    (doc_with(f"{D}.health.pending_minutes", -1), f"{D}.health.pending_minutes", "non-negative"),
    (doc_with(f"{D}.health.tier", "orange"), f"{D}.health.tier", "unknown tier"),
    (doc_with(f"{D}.health.silent_minutes", DELETE), f"{D}.health.silent_minutes", "is required"),
    (doc_with("regions.north.air", {"tiers": {"red": {"enter_above": 100, "exit_below": 120}}}), "regions.north.air.tiers.red.exit_below", "must be below"),
    (doc_with("regions.north.air", ["tiers"]), "regions.north.air", "must be a mapping"),
    (doc_with("regions.default", DELETE), "regions.south", "no rules for this region and no 'default'"),
]


@pytest.mark.parametrize(("doc", "key", "reason"), ERRORS, ids=[f"{k}:{r}" for _, k, r in ERRORS])
def test_rule_errors_name_file_key_and_reason(tmp_path: Path, doc: dict[str, Any], key: str, reason: str) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(yaml.safe_dump(doc, allow_unicode=True))
    with pytest.raises(ConfigError) as info:
        load_rules(f, NET)
    assert (info.value.file, info.value.key) == (str(f), key), str(info.value)
    assert reason in info.value.reason, str(info.value)
    assert str(info.value) == f"{f}: {key}: {info.value.reason}"


def test_the_base_document_itself_is_valid() -> None:
    """Guards the error table: each case fails because of its one change, not the base."""
    rs = parse_rules(copy.deepcopy(BASE), NET)
    assert rs.regions["north"].air is not None


def test_region_sections_merge_over_the_default_key_by_key_and_null_switches_off() -> None:
    doc = doc_with("regions.south", {"air": {"min_dwell_minutes": 10}, "health": None})
    rs = parse_rules(doc, NET)
    south, north = rs.regions["south"], rs.regions["north"]
    assert south.air is not None and north.air is not None
    assert south.air.hold.min_dwell_ms == 10 * 60_000 and north.air.hold.min_dwell_ms == 60 * 60_000
    assert south.air.bands == north.air.bands  # kept from the default
    assert south.health is None and north.health is not None


def test_aqi_category_thresholds_and_class_limits() -> None:
    doc = doc_with(f"{D}.air.tiers.yellow", {"enter_category": "moderate", "exit_below_category": "light"})
    doc["regions"]["south"] = {"water": {"station_targets": {"s-w01": "II"}}}
    rs = parse_rules(doc, NET)
    air = rs.regions["north"].air
    assert air is not None and (air.bands[0].enter_above, air.bands[0].exit_below) == (150.0, 101.0)
    water = rs.regions["south"].water
    assert water is not None
    yellow, red = water.class_bands
    # target III: yellow from IV, red from V; target II: yellow from III, red from IV; worse than V always red
    assert [water.class_limit(b, "n-w01") for b in (yellow, red)] == [4, 5]
    assert [water.class_limit(b, "s-w01") for b in (yellow, red)] == [3, 4]


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\n  regions: [")
    with pytest.raises(ConfigError) as info:
        load_rules(bad, NET)
    assert (info.value.file, info.value.key) == (str(bad), "<yaml>")
    with pytest.raises(ConfigError) as info:
        load_rules(tmp_path / "none.yaml", NET)
    assert info.value.key == "<file>"


def test_cli_validate_prints_every_region_and_fails_with_file_key_reason(tmp_path: Path) -> None:
    ok = CliRunner().invoke(rules_cli, ["validate", str(SHIPPED)])
    assert ok.exit_code == 0, ok.output
    assert "rule set jw-tiers version" in ok.output
    for region in ("north:", "central:", "south:"):
        assert f"\n{region}\n" in ok.output
    assert "c-w01 II" in ok.output  # the central override shows in the effective rules

    f = tmp_path / "rules.yaml"
    net = tmp_path / "net.yaml"
    net.write_text(yaml.safe_dump(NETWORK_DOC))
    f.write_text(yaml.safe_dump(doc_with(f"{D}.air.tiers.red.exit_below", 250)))
    bad = CliRunner().invoke(rules_cli, ["validate", str(f), "--network", str(net)])
    assert bad.exit_code == 1
    assert f"{f}: {D}.air.tiers.red.exit_below: exit threshold (250) must be below the enter threshold (200)" in bad.output

    f.write_text(yaml.safe_dump(BASE))
    good = CliRunner().invoke(rules_cli, ["validate", str(f), "--network", str(net)])
    assert good.exit_code == 0 and "rule set test-rules version 3, 2 regions (+ default)" in good.output


@pytest.mark.parametrize("args", [[], ["validate"]])
def test_cli_help_documents_commands_and_options(args: list[str]) -> None:
    out = CliRunner().invoke(rules_cli, [*args, "--help"])
    assert out.exit_code == 0
    assert ("validate" in out.output) and ("--network" in out.output if args else "Tier rules per region" in out.output)
