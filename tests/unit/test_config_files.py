"""Config files fail at load with the file, the key and the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from jointwatch.settings import REPO_ROOT, load_settings
from jobs.alignment import Alignment, load_alignment
from schemas.errors import ConfigError
from schemas.network import load_network


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "f.yaml"
    f.write_text(text)
    return f


def test_shipped_config_files_load() -> None:
    net = load_network(REPO_ROOT / "config" / "network.yaml")
    assert len(net.regions) >= 3
    assert sum(s.medium == "air" for s in net.stations.values()) >= 30
    assert sum(s.medium == "water" for s in net.stations.values()) >= 6
    assert not (REPO_ROOT / "config" / "tiers.yaml").exists()  # the job's old tier rule is gone: config/tier_rules.yaml rules alerts


NETWORK_CASES = [
    ("version: 2\nregions: []\nstations: []", "version", "must be 1"),
    ("version: 1\nregions: [{id: north, timezone: Mars/Olympus}]\nstations: []", "regions[0].timezone", "unknown IANA time zone"),
    ("version: 1\nregions: [{id: North, timezone: UTC}]\nstations: []", "regions[0].id", "must match"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\nstations: [{id: a-1, region: west, medium: air, lat: 1, lon: 1, parameters: []}]", "stations[0].region", "unknown region 'west'"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\nstations: [{id: a-1, region: north, medium: air, lat: 1, lon: 1, parameters: [nh3n]}]", "stations[0].parameters", "is a water parameter"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\nstations: [{id: a-1, region: north, medium: water, lat: 1, lon: 1, parameters: [nh3n]}]", "stations[0].river_km", "is required"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\nstations: [{id: a-1, region: north, medium: air, lat: '1', lon: 1, parameters: []}]", "stations[0].lat", "must be int or float"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\nstations: [{id: a-1, region: north, medium: air, lat: 91, lon: 1, parameters: []}]", "stations[0]", "out of range"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\n  stations: [", "<yaml>", ""),
    ("version: 1\nsampling_s: 7\nregions: []\nstations: []", "sampling_s", "dividing 60 or a multiple of 60"),
    ("version: 1\nregions: [{id: north, timezone: UTC}]\nstations: [{id: a-1, region: north, medium: air, lat: 1, lon: 1, parameters: [], sampling_s: 90}]",
     "stations[0].sampling_s", "got 90"),
]


def test_sampling_interval_defaults_to_the_network_s_and_a_station_may_differ(tmp_path: Path) -> None:
    net = load_network(write(tmp_path, "version: 1\nsampling_s: 300\nregions: [{id: north, timezone: UTC}]\nstations:\n"
                                       "  - {id: a-1, region: north, medium: air, lat: 1, lon: 1, parameters: []}\n"
                                       "  - {id: a-2, region: north, medium: air, lat: 1, lon: 1, parameters: [], sampling_s: 10}"))
    assert (net.stations["a-1"].sampling_s, net.stations["a-2"].sampling_s) == (300, 10)
    assert {s.sampling_s for s in load_network(REPO_ROOT / "config" / "network.yaml").stations.values()} == {60}


def test_alignment_file_loads_with_defaults_for_missing_keys(tmp_path: Path) -> None:
    assert load_alignment(REPO_ROOT / "config" / "alignment.yaml") == Alignment()  # the shipped file states the defaults
    assert load_alignment(write(tmp_path, "version: 1\nallowed_lateness_min: 0")) == Alignment(allowed_lateness_min=0)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ("version: 2", "version", "must be 1"),
        ("version: 1\nlateness: 5", "lateness", "unknown setting"),
        ("version: 1\nallowed_lateness_min: 10.5", "allowed_lateness_min", "whole number within 0..1440"),
        ("version: 1\nout_of_orderness_s: 30000", "out_of_orderness_s", "within 0..3600"),
        ("version: 1\nout_of_orderness_s: true", "out_of_orderness_s", "got True"),
        ("version: 1\nsource_idle_s: 0", "source_idle_s", "at least 1"),
        ("- a list", "<root>", "must be a mapping"),
    ],
)
def test_alignment_errors(tmp_path: Path, text: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_alignment(write(tmp_path, text))
    assert err.value.key == key and reason in err.value.reason


@pytest.mark.parametrize(("text", "key", "reason"), NETWORK_CASES)
def test_network_errors(tmp_path: Path, text: str, key: str, reason: str) -> None:
    f = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_network(f)
    assert (info.value.file, info.value.key) == (str(f), key)
    assert reason in info.value.reason


def test_settings_precedence_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write(tmp_path, "port_base: 20000\nstate_dir: /tmp/x")
    assert load_settings(f).port_base == 20000
    monkeypatch.setenv("JW_PORT_BASE", "21000")
    assert load_settings(f).port_base == 21000
    assert load_settings(f, port_base=22000).mqtt_port == 22883
    with pytest.raises(ConfigError, match="port_base: must be within"):
        load_settings(write(tmp_path, "port_base: 80"))
    with pytest.raises(ConfigError, match="kafka_prot: unknown setting"):
        load_settings(write(tmp_path, "kafka_prot: 1"))


def test_job_flags_override_the_alignment_file_under_the_same_rules(tmp_path: Path) -> None:
    from jobs.pipeline import main

    with pytest.raises(SystemExit, match="command line: allowed_lateness_min: must be a whole number within 0..1440, got -3"):
        main(["--bootstrap", "b:1", "--allowed-lateness", "-3"])
    with pytest.raises(SystemExit, match="unknown setting"):
        main(["--bootstrap", "b:1", "--alignment", str(write(tmp_path, "version: 1\nlateness_min: 5"))])
