"""Station geometry: great-circle distance, bearings, compass names, transport lag bounds.

Bearings are degrees clockwise from north (due east = 90). Wind direction follows the
meteorological convention of the stream (wind_dir = where the wind comes FROM); the
upwind test that uses them is apportion.transport._upwind.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from schemas.network import Network, Station

EARTH_RADIUS_KM = 6371.0
COMPASS16: tuple[str, ...] = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW", "SW", "WSW", "W", "WNW", "NW", "NNW")


def distance_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Haversine distance; broadcasts over arrays (stations are km apart, so a sphere is accurate enough)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), dtype=float)


def bearing_deg(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Initial great-circle bearing from point 1 to point 2, in [0, 360)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dl = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    y = np.sin(dl) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dl)
    return np.asarray(np.degrees(np.arctan2(y, x)) % 360.0, dtype=float)


def compass(direction_deg: float) -> str:
    """16-point compass name of a direction (for explanations: 'wind from NNE')."""
    return COMPASS16[int(((direction_deg % 360.0) + 11.25) // 22.5) % 16]


def station_distance_km(a: Station, b: Station) -> float:
    return float(distance_km(a.lat, a.lon, b.lat, b.lon))


def station_bearing_deg(a: Station, b: Station) -> float:
    """Bearing from station a to station b."""
    return float(bearing_deg(a.lat, a.lon, b.lat, b.lon))


def lag_bounds_h(distance: ArrayLike, wind_speed_ms: ArrayLike, speed_factor: tuple[float, float] = (0.5, 1.5),
                 min_speed_ms: float = 0.5, max_lag_h: float = 12.0) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Plausible transport lag (hours) for a distance (km) at a wind speed (m/s).

    Air parcels rarely travel at exactly the measured 10 m wind: the effective transport
    speed is taken to lie within speed_factor x the wind speed (slower near the ground,
    faster aloft), so the lag lies in [d / (v*hi), d / (v*lo)]. Speeds below
    min_speed_ms are calm (no coherent transport); lags are capped at max_lag_h.
    """
    d = np.asarray(distance, dtype=float)
    v = np.maximum(np.asarray(wind_speed_ms, dtype=float), min_speed_ms) * 3.6  # km/h
    lo, hi = d / (v * speed_factor[1]), d / (v * speed_factor[0])
    return np.minimum(lo, max_lag_h), np.minimum(hi, max_lag_h)


def air_stations(network: Network) -> tuple[Station, ...]:
    """Air stations in registry order (the order every station axis in this package uses)."""
    return tuple(s for s in network.stations.values() if s.medium == "air")


def pairwise(stations: tuple[Station, ...]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(distance_km, bearing_deg) matrices, [i, j] from station i to station j."""
    lat = np.array([s.lat for s in stations])
    lon = np.array([s.lon for s in stations])
    return (distance_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :]),
            bearing_deg(lat[:, None], lon[:, None], lat[None, :], lon[None, :]))
