"""Which regions assist: an interim, physically motivated choice until source
apportionment (issue 6) supplies origin and affected regions.

The station's own region always leads. Regions assist when the pollution is
heading their way:
- air: another region has an air station within `radius_km`, inside a
  `sector_deg` half-angle around the downwind bearing of the hour's mean wind at
  the alerting station (only when the wind is steady enough to mean something);
- water: another region has a section downstream on the river within `reach_km`.
Health and region-level alerts have no assist regions here.
Pure: the same observation and network always give the same answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from alerts.tiers.model import Observation
from schemas.network import Network, Station

EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class AssistPolicy:
    radius_km: float = 60.0
    sector_deg: float = 45.0
    min_steadiness: float = 0.5  # length of the hour's mean wind unit vector; below it the wind has no direction
    reach_km: float = 200.0


def distance_km(a: Station, b: Station) -> float:
    """Great-circle (haversine) distance."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


def bearing_deg(a: Station, b: Station) -> float:
    """Initial bearing from a to b, degrees clockwise from north."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def angle_between(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def downwind_regions(network: Network, station: Station, wind_from_deg: float, policy: AssistPolicy = AssistPolicy()) -> tuple[str, ...]:
    towards = (wind_from_deg + 180.0) % 360.0
    hit = {
        s.region
        for s in network.stations.values()
        if s.region != station.region and s.medium == "air" and s.id != station.id
        and distance_km(station, s) <= policy.radius_km and angle_between(bearing_deg(station, s), towards) <= policy.sector_deg
    }
    return tuple(sorted(hit))


def downstream_regions(network: Network, station: Station, policy: AssistPolicy = AssistPolicy()) -> tuple[str, ...]:
    if station.river_km is None:
        return ()
    hit = {
        s.region
        for s in network.stations.values()
        if s.region != station.region and s.river_km is not None and 0 < s.river_km - station.river_km <= policy.reach_km
    }
    return tuple(sorted(hit))


class NetworkAssist:
    """An `Apportion` for the state machine: (origin_region, affected_regions) of an observation."""

    def __init__(self, network: Network, policy: AssistPolicy = AssistPolicy()) -> None:
        self.network, self.policy = network, policy

    def __call__(self, obs: Observation) -> tuple[str, tuple[str, ...]]:
        station = self.network.stations.get(obs.subject) if obs.scope == "station" else None
        if station is None or obs.kind == "health":
            return obs.region, ()
        if obs.kind == "water":
            return obs.region, downstream_regions(self.network, station, self.policy)
        wind = obs.inputs.get("wind")
        if not wind or wind.get("from_deg") is None or float(wind.get("steadiness") or 0.0) < self.policy.min_steadiness:
            return obs.region, ()
        return obs.region, downwind_regions(self.network, station, float(wind["from_deg"]), self.policy)
