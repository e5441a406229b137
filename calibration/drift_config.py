"""The drift detector's configuration: the `drift:` section of the calibration registry
file (config/calibration.yaml), and which reference monitor each low-cost sensor is
compared with.

    drift:
      max_distance_km: 5      # pair each listed sensor with the nearest reference within this
      pairs:                  # explicit pairs; each replaces the nearest-station rule for its sensor
        - {station_id: c-a08, parameter: no2, reference_station_id: c-a07}
      bin_minutes: 60         # one point of the fit: a mean over this many minutes
      window_bins: 72         # bins per fit (72 h at 60 min)
      min_bins: 48            # valid bins with both means a fit needs
      min_minutes_per_bin: 45 # minutes with a usable value a bin mean needs
      every_bins: 24          # evaluate at every bin end that is a whole multiple of this many bins (UTC epoch)
      gain_tolerance: 0.10    # |gain - 1| of calibrated vs reference beyond this is drift
      offset_tolerance: 3.0   # |offset| beyond this (the parameter's unit) is drift
      min_r2: 0.7             # a worse fit proposes nothing
      method: ols             # or theil_sen
      slack_minutes: 5        # disorder tolerated inside an input partition before a bin is final

Every key is optional (defaults above; min_minutes_per_bin defaults to 3/4 of a bin and
min_bins to 2/3 of the window, the HJ 663-style validity share the job's hours use).

Which sensor is compared with which reference (pair_sensors), first rule that applies:
1. `pairs` here, explicitly;
2. the network's `colocated_with` (config/network.yaml: a low-cost pod beside a reference
   analyzer): the pod against its partner, for every index parameter both measure, whether
   the registry lists the pod or not (unlisted, its raw values are what is published);
3. a sensor the registry lists (its `sensors`: the low-cost sensors) against the nearest
   reference within max_distance_km: a station measuring the parameter that the registry
   does not list for it and that is no co-located pod itself.
Pairing is a pure function of the network, the listed sensors and this section, so every
run of the stage compares the same stations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from apportion.geometry import station_distance_km
from calibration.drift import DriftSettings
from calibration.registry import load_registry, sensor_key
from jobs.validity import INDEX_PARAMETERS
from schemas.errors import ConfigError, read_yaml
from schemas.network import ID_PATTERN, Network
from schemas.parameters import PARAMETERS

MINUTE_MS = 60_000
Basis = Literal["explicit", "colocated", "nearest"]  # which rule paired them (see the module doc)
PAIR_KEYS = ("station_id", "parameter", "reference_station_id")
INT_KEYS = ("bin_minutes", "window_bins", "min_bins", "min_minutes_per_bin", "every_bins", "slack_minutes")
FLOAT_KEYS = ("max_distance_km", "gain_tolerance", "offset_tolerance", "min_r2")
KEYS = (*INT_KEYS, *FLOAT_KEYS, "method", "pairs")


@dataclass(frozen=True)
class PairSpec:
    """An explicit pair as written in the file (checked against the network by pair_sensors)."""

    station_id: str
    parameter: str
    reference_station_id: str


@dataclass(frozen=True)
class Pair:
    """A low-cost sensor and the reference monitor it is compared with."""

    station_id: str
    parameter: str
    reference_station_id: str
    distance_km: float
    basis: Basis = "nearest"

    @property
    def sensor(self) -> str:
        return sensor_key(self.station_id, self.parameter)


@dataclass(frozen=True)
class DriftConfig:
    settings: DriftSettings = field(default_factory=DriftSettings)  # bins, window, tolerances, fit method
    max_distance_km: float = 5.0
    pairs: tuple[PairSpec, ...] = ()
    min_minutes_per_bin: int = 45
    every_bins: int = 24
    slack_minutes: int = 5
    source: str = field(default="", compare=False)

    @property
    def bin_ms(self) -> int:
        return self.settings.bin_ms

    @property
    def every_ms(self) -> int:
        return self.every_bins * self.settings.bin_ms

    @property
    def slack_ms(self) -> int:
        return self.slack_minutes * MINUTE_MS


def _int(section: Mapping[str, Any], key: str, default: int, low: int, file: Path | str) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(file, f"drift.{key}", f"must be an integer >= {low}, got {value!r}")
    return value


def _float(section: Mapping[str, Any], key: str, default: float, low: float, high: float, file: Path | str) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(file, f"drift.{key}", f"must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _pair_specs(raw: Any, file: Path | str) -> tuple[PairSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(file, "drift.pairs", "must be a list of {station_id, parameter, reference_station_id}")
    out: list[PairSpec] = []
    for i, p in enumerate(raw):
        where = f"drift.pairs[{i}]"
        if not isinstance(p, Mapping):
            raise ConfigError(file, where, "must be a mapping with station_id, parameter and reference_station_id")
        extra = sorted(set(p) - set(PAIR_KEYS))
        if extra:
            raise ConfigError(file, f"{where}.{extra[0]}", f"unknown key (allowed: {', '.join(PAIR_KEYS)})")
        for key in ("station_id", "reference_station_id"):
            if not isinstance(p.get(key), str) or not ID_PATTERN.match(p[key]):
                raise ConfigError(file, f"{where}.{key}", f"must be a station id matching {ID_PATTERN.pattern}, got {p.get(key)!r}")
        if p.get("parameter") not in PARAMETERS:
            raise ConfigError(file, f"{where}.parameter", f"unknown parameter {p.get('parameter')!r}")
        if p["station_id"] == p["reference_station_id"]:
            raise ConfigError(file, f"{where}.reference_station_id", "must be another station than station_id")
        spec = PairSpec(p["station_id"], p["parameter"], p["reference_station_id"])
        if any((q.station_id, q.parameter) == (spec.station_id, spec.parameter) for q in out):
            raise ConfigError(file, where, f"duplicate pair for sensor {sensor_key(spec.station_id, spec.parameter)!r}")
        out.append(spec)
    return tuple(out)


def parse_drift(section: Any, file: Path | str) -> DriftConfig:
    """Validate a `drift:` section (None: every default); ConfigError names `file: drift.key: reason`."""
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ConfigError(file, "drift", "must be a mapping of drift settings")
    extra = sorted(set(section) - set(KEYS))
    if extra:
        raise ConfigError(file, f"drift.{extra[0]}", f"unknown key (allowed: {', '.join(KEYS)})")
    bin_minutes = _int(section, "bin_minutes", 60, 1, file)
    if bin_minutes > 1440:
        raise ConfigError(file, "drift.bin_minutes", f"must be at most 1440 (a day), got {bin_minutes}")
    window_bins = _int(section, "window_bins", 72, 3, file)
    min_bins = _int(section, "min_bins", math.ceil(window_bins * 2 / 3), 3, file)
    if min_bins > window_bins:
        raise ConfigError(file, "drift.min_bins", f"must be at most window_bins ({window_bins}), got {min_bins}")
    min_minutes = _int(section, "min_minutes_per_bin", math.ceil(bin_minutes * 3 / 4), 1, file)
    if min_minutes > bin_minutes:
        raise ConfigError(file, "drift.min_minutes_per_bin", f"must be at most bin_minutes ({bin_minutes}), got {min_minutes}")
    method = section.get("method", "ols")
    if method not in ("ols", "theil_sen"):
        raise ConfigError(file, "drift.method", f"must be 'ols' or 'theil_sen', got {method!r}")
    settings = DriftSettings(
        bin_minutes=bin_minutes,
        window_bins=window_bins,
        min_bins=min_bins,
        gain_tolerance=_float(section, "gain_tolerance", 0.10, 1e-6, 10.0, file),
        offset_tolerance=_float(section, "offset_tolerance", 3.0, 0.0, 1e6, file),
        min_r2=_float(section, "min_r2", 0.7, 0.0, 1.0, file),
        method=method,
    )
    return DriftConfig(
        settings=settings,
        max_distance_km=_float(section, "max_distance_km", 5.0, 0.0, 1000.0, file),
        pairs=_pair_specs(section.get("pairs"), file),
        min_minutes_per_bin=min_minutes,
        every_bins=_int(section, "every_bins", 24, 1, file),
        slack_minutes=_int(section, "slack_minutes", 5, 0, file),
        source=str(file),
    )


def _colocated_with(station: Any) -> str | None:
    return getattr(station, "colocated_with", None)  # a network without co-location info pairs by distance only


def pair_sensors(config: DriftConfig, network: Network, listed: Iterable[str], file: Path | str = "") -> tuple[Pair, ...]:
    """Every watched sensor's reference, sorted by sensor, by the rules of the module doc: explicit
    pairs, then co-located pods, then each other listed sensor with the nearest reference (ties by
    id) within max_distance_km. A listed sensor without one is not watched.

    ConfigError (`file: drift.pairs[i].key: reason`) for an explicit pair the network contradicts.
    """
    listed = set(listed)
    file = file or config.source
    out: dict[str, Pair] = {}
    for i, spec in enumerate(config.pairs):
        where = f"drift.pairs[{i}]"
        for key in ("station_id", "reference_station_id"):
            sid = getattr(spec, key)
            station = network.stations.get(sid)
            if station is None:
                raise ConfigError(file, f"{where}.{key}", f"unknown station {sid!r} (not in {network.source or 'the network'})")
            if spec.parameter not in station.parameters:
                raise ConfigError(file, f"{where}.{key}", f"station {sid} does not measure {spec.parameter!r}")
        if sensor_key(spec.reference_station_id, spec.parameter) in listed:
            raise ConfigError(file, f"{where}.reference_station_id",
                              f"{spec.reference_station_id} is a low-cost sensor of {spec.parameter} (listed in sensors), not a reference")
        distance = station_distance_km(network.stations[spec.station_id], network.stations[spec.reference_station_id])
        pair = Pair(spec.station_id, spec.parameter, spec.reference_station_id, round(distance, 3), "explicit")
        out[pair.sensor] = pair
    for station in sorted(network.stations.values(), key=lambda s: s.id):
        partner = network.stations.get(_colocated_with(station) or "")
        if partner is None:
            continue
        for parameter in INDEX_PARAMETERS:
            key = sensor_key(station.id, parameter)
            if (key not in out and parameter in station.parameters and parameter in partner.parameters
                    and sensor_key(partner.id, parameter) not in listed):
                out[key] = Pair(station.id, parameter, partner.id, round(station_distance_km(station, partner), 3), "colocated")
    for key in sorted(listed - set(out)):
        station_id, parameter = key.split("/", 1)
        station = network.stations.get(station_id)
        if station is None:
            continue  # the registry's own validation names it; here it just has no reference
        candidates = sorted(
            (station_distance_km(station, other), other.id)
            for other in network.stations.values()
            if other.id != station_id and parameter in other.parameters and sensor_key(other.id, parameter) not in listed
            and _colocated_with(other) is None
        )
        if candidates and candidates[0][0] <= config.max_distance_km:
            distance, reference = candidates[0]
            out[key] = Pair(station_id, parameter, reference, round(distance, 3))
    return tuple(out[k] for k in sorted(out))


def load_drift(path: str | Path, network: Network) -> tuple[DriftConfig, tuple[Pair, ...]]:
    """The `drift:` section of a registry file and its pairs (the file's `sensors` are the low-cost sensors)."""
    registry = load_registry(path, network)  # validates the whole file, so a broken registry is named first
    doc = read_yaml(path)
    config = parse_drift(doc.get("drift"), Path(path))
    return config, pair_sensors(config, network, registry.sensors, Path(path))
