"""The station registry: regions, stations, where they are and what they measure.

Loaded from YAML (config/network.yaml) and validated; every error names the file,
the key and the reason. The bridge uses it to reject unknown stations, the stack
to provision device credentials and ACLs, the simulator to place its stations.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.errors import ConfigError, read_yaml
from schemas.parameters import PARAMETERS, Medium

ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{1,31}$")  # safe in MQTT topics, usernames, tags
# A co-located pair must sample the same air or water: a drift check against the partner
# assumes it, and the simulator gives both the same truth.
COLOCATION_MAX_KM = 1.0
EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


@dataclass(frozen=True)
class Region:
    id: str
    name: str
    timezone: str


@dataclass(frozen=True)
class Station:
    id: str
    region: str
    medium: Medium
    lat: float
    lon: float
    timezone: str
    parameters: tuple[str, ...]
    river_km: float | None = None  # distance along the river from its first section (water only)
    sampling_s: int = 60  # the device's reporting interval: what a window's expected count is made of
    colocated_with: str | None = None  # a (reference) station of the same medium within COLOCATION_MAX_KM


@dataclass(frozen=True)
class Network:
    regions: dict[str, Region]
    stations: dict[str, Station]
    river: str | None = None
    source: str = field(default="", compare=False)


def _require(doc: dict[str, Any], key: str, where: str, file: Path, kind: type | tuple[type, ...]) -> Any:
    if key not in doc:
        raise ConfigError(file, f"{where}.{key}", "is required")
    value = doc[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(file, f"{where}.{key}", f"must be {names}, got {type(value).__name__} {value!r}")
    return value


def _zone(name: str, file: Path, key: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(file, key, f"unknown IANA time zone {name!r}") from None
    return name


def _sampling(value: Any, file: Path, key: str) -> int:
    # Whole seconds dividing a minute or whole minutes, so every minute (or hour) expects a whole count.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0 or (60 % value and value % 60):
        raise ConfigError(file, key, f"must be whole seconds dividing 60 or a multiple of 60, got {value!r}")
    return value


def distance_km(a: Station, b: Station) -> float:
    """Great-circle (haversine) distance between two stations."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(b.lon - a.lon) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def _check_colocation(stations: dict[str, Station], order: list[str], file: Path) -> None:
    """Every colocated_with names another station of the same medium within COLOCATION_MAX_KM
    that is not itself co-located (the partner is the reference: no chains)."""
    for i, sid in enumerate(order):
        st = stations[sid]
        target_id = st.colocated_with
        if target_id is None:
            continue
        key = f"stations[{i}].colocated_with"
        target = stations.get(target_id)
        if target is None:
            raise ConfigError(file, key, f"unknown station {target_id!r}")
        if target_id == sid:
            raise ConfigError(file, key, f"station {sid} cannot be co-located with itself")
        if target.medium != st.medium:
            raise ConfigError(file, key, f"{target_id} is a {target.medium} station, {sid} is {st.medium}: co-located stations must share the medium")
        if target.colocated_with is not None:
            raise ConfigError(file, key, f"{target_id} is itself co-located with {target.colocated_with}: name that station instead")
        d = distance_km(st, target)
        if d > COLOCATION_MAX_KM:
            raise ConfigError(file, key, f"{target_id} is {d:.2f} km from {sid}; co-located stations must be within {COLOCATION_MAX_KM:g} km")


def parse_network(doc: Any, file: Path) -> Network:
    if not isinstance(doc, dict):
        raise ConfigError(file, "<root>", "must be a mapping with 'regions' and 'stations'")
    if doc.get("version") != 1:
        raise ConfigError(file, "version", f"must be 1, got {doc.get('version')!r}")
    regions: dict[str, Region] = {}
    for i, r in enumerate(_require(doc, "regions", "<root>", file, list)):
        where = f"regions[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(file, where, "must be a mapping")
        rid = _require(r, "id", where, file, str)
        if not ID_PATTERN.match(rid):
            raise ConfigError(file, f"{where}.id", f"{rid!r} must match {ID_PATTERN.pattern}")
        if rid in regions:
            raise ConfigError(file, f"{where}.id", f"duplicate region {rid!r}")
        tz = _zone(_require(r, "timezone", where, file, str), file, f"{where}.timezone")
        regions[rid] = Region(rid, str(r.get("name", rid)), tz)
    default_sampling = _sampling(doc.get("sampling_s", 60), file, "sampling_s")
    stations: dict[str, Station] = {}
    for i, s in enumerate(_require(doc, "stations", "<root>", file, list)):
        where = f"stations[{i}]"
        if not isinstance(s, dict):
            raise ConfigError(file, where, "must be a mapping")
        sid = _require(s, "id", where, file, str)
        if not ID_PATTERN.match(sid):
            raise ConfigError(file, f"{where}.id", f"{sid!r} must match {ID_PATTERN.pattern}")
        if sid in stations:
            raise ConfigError(file, f"{where}.id", f"duplicate station {sid!r}")
        region = _require(s, "region", where, file, str)
        if region not in regions:
            raise ConfigError(file, f"{where}.region", f"unknown region {region!r} (known: {sorted(regions)})")
        medium = _require(s, "medium", where, file, str)
        if medium not in ("air", "water"):
            raise ConfigError(file, f"{where}.medium", f"must be 'air' or 'water', got {medium!r}")
        lat = float(_require(s, "lat", where, file, (int, float)))
        lon = float(_require(s, "lon", where, file, (int, float)))
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ConfigError(file, where, f"coordinates ({lat}, {lon}) out of range")
        params = _require(s, "parameters", where, file, list)
        for p in params:
            if p not in PARAMETERS:
                raise ConfigError(file, f"{where}.parameters", f"unknown parameter {p!r}")
            if PARAMETERS[p].medium != medium:
                raise ConfigError(file, f"{where}.parameters", f"{p!r} is a {PARAMETERS[p].medium} parameter, station is {medium}")
        tz = _zone(str(s.get("timezone", regions[region].timezone)), file, f"{where}.timezone")
        sampling = _sampling(s.get("sampling_s", default_sampling), file, f"{where}.sampling_s")
        river_km = s.get("river_km")
        if medium == "water" and not isinstance(river_km, (int, float)):
            raise ConfigError(file, f"{where}.river_km", "is required for water stations (number, km from the first section)")
        colocated = s.get("colocated_with")
        if colocated is not None and not isinstance(colocated, str):
            raise ConfigError(file, f"{where}.colocated_with", f"must be a station id, got {type(colocated).__name__} {colocated!r}")
        stations[sid] = Station(sid, region, medium, lat, lon, tz, tuple(params), None if river_km is None else float(river_km), sampling, colocated)
    _check_colocation(stations, list(stations), file)  # after the loop: the partner may come later in the file
    return Network(regions, stations, doc.get("river"), str(file))


def load_network(path: str | Path) -> Network:
    return parse_network(read_yaml(path), Path(path))
