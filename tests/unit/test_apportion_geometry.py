"""Station geometry: known distances and bearings, the upwind test, transport lag bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apportion.geometry import bearing_deg, compass, distance_km, lag_bounds_h, pairwise, station_bearing_deg, station_distance_km
from schemas.network import Station


def test_bearings_of_the_cardinal_directions() -> None:
    assert float(bearing_deg(0.0, 0.0, 0.0, 1.0)) == pytest.approx(90.0)  # due east
    assert float(bearing_deg(0.0, 0.0, 1.0, 0.0)) == pytest.approx(0.0)  # due north
    assert float(bearing_deg(0.0, 0.0, -1.0, 0.0)) == pytest.approx(180.0)
    assert float(bearing_deg(0.0, 1.0, 0.0, 0.0)) == pytest.approx(270.0)


def test_distance_of_one_degree_of_latitude_is_earth_radius_times_pi_over_180() -> None:
    assert float(distance_km(49.0, 17.0, 50.0, 17.0)) == pytest.approx(6371.0 * math.pi / 180.0, rel=1e-9)
    # along the equator one degree of longitude is the same arc
    assert float(distance_km(0.0, 10.0, 0.0, 11.0)) == pytest.approx(6371.0 * math.pi / 180.0, rel=1e-9)


def test_compass_names_wrap_around_north() -> None:
    assert compass(0.0) == "N" and compass(359.0) == "N" and compass(90.0) == "E" and compass(202.5) == "SSW"


def test_lag_bounds_from_distance_and_speed() -> None:
    # 36 km at 5 m/s = 18 km/h: 2 h at the wind speed; bounds at 1.5x and 0.5x the speed
    lo, hi = lag_bounds_h(36.0, 5.0, speed_factor=(0.5, 1.5), max_lag_h=12.0)
    assert float(lo) == pytest.approx(36.0 / 27.0)
    assert float(hi) == pytest.approx(4.0)
    lo, hi = lag_bounds_h(200.0, 1.0, max_lag_h=12.0)
    assert float(hi) == 12.0  # capped
    _, hi_calm = lag_bounds_h(10.0, 0.0, min_speed_ms=0.5, max_lag_h=100.0)
    assert float(hi_calm) == pytest.approx(10.0 / (0.5 * 3.6 * 0.5))  # calm treated as the minimum speed


def test_pairwise_matrices_are_consistent() -> None:
    a = Station("a", "r", "air", 49.0, 17.0, "UTC", ())
    b = Station("b", "r", "air", 49.0, 17.5, "UTC", ())
    d, br = pairwise((a, b))
    assert d[0, 1] == pytest.approx(d[1, 0]) and d[0, 0] == 0.0
    assert 80.0 < br[0, 1] < 100.0 and 260.0 < br[1, 0] < 280.0  # roughly east, and back roughly west
    assert np.allclose(d, d.T)
    assert station_distance_km(a, b) == pytest.approx(d[0, 1]) and station_bearing_deg(b, a) == pytest.approx(br[1, 0])
    # 0.5 degree of longitude at 49 N: R * cos(49 deg) * 0.5 deg in radians, to within the great-circle/parallel difference
    assert station_distance_km(a, b) == pytest.approx(6371.0 * math.cos(math.radians(49.0)) * math.radians(0.5), rel=1e-3)
