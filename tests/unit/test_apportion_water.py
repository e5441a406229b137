"""River reach attribution on a hand-computed example."""

from __future__ import annotations

import numpy as np
import pytest

from apportion.records import water_records
from apportion.water import attribute_reaches, river_sections
from schemas.models import validation_errors
from schemas.network import parse_network

DOC = {
    "version": 1,
    "regions": [{"id": "up", "timezone": "UTC"}, {"id": "down", "timezone": "UTC"}],
    "stations": [
        {"id": "w-c", "region": "down", "medium": "water", "lat": 48.8, "lon": 17.0, "river_km": 30, "parameters": ["nh3n"]},
        {"id": "w-a", "region": "up", "medium": "water", "lat": 49.0, "lon": 17.0, "river_km": 0, "parameters": ["nh3n"]},
        {"id": "w-b", "region": "up", "medium": "water", "lat": 48.9, "lon": 17.0, "river_km": 10, "parameters": ["nh3n"]},
    ],
}
NET = parse_network(DOC, "test.yaml")  # type: ignore[arg-type]
SECTIONS = river_sections(NET)


def _series() -> tuple[np.ndarray, np.ndarray]:
    # velocity 5 km/h: a -> b takes 2 h, b -> c 4 h (hourly steps).
    conc = np.array([[1.0] * 12, [1.5] * 12, [2.0] * 12])
    conc[0, 3] += 2.0  # a pulse passes a at step 3 ...
    conc[1, 5] += 2.0  # ... reaches b 2 h later ...
    conc[2, 9] += 2.0  # ... and c 4 h after that; the reaches themselves add a constant
    flow = np.array([[10.0] * 12, [10.0] * 12, [12.0] * 12])
    return conc, flow


def test_sections_are_ordered_downstream() -> None:
    assert [s.id for s in SECTIONS] == ["w-a", "w-b", "w-c"]


def test_loads_added_per_reach_and_region_upstream_convention() -> None:
    conc, flow = _series()
    flow[2, 9] = 10.0  # keep the pulse's load at c equal to the one at b so it cancels exactly
    res = attribute_reaches(SECTIONS, conc, 6, 12, 1.0, 5.0, "nh3n", "mg/L", flow=flow)
    assert res.basis == "load" and res.unit == "kg/d"
    ab, bc = res.reaches
    assert ab.travel_h == pytest.approx(2.0) and bc.travel_h == pytest.approx(4.0)
    # a -> b: 1.5*10 - 1.0*10 = 5 g/s = 432 kg/d at every step of the window
    assert ab.addition == pytest.approx(5.0 * 86.4)
    # b -> c: 2.0*12 - 1.5*10 = 9 g/s = 777.6 kg/d, except step 9 where the pulse (3.5 mg/L at b,
    # 4.0 at c, both at 10 m3/s) gives 4.0*10 - 3.5*10 = 5 g/s: mean over steps 6..11 = (5*9 + 5)/6 g/s
    assert bc.addition == pytest.approx((5 * 9.0 + 5.0) / 6 * 86.4)
    # the border section w-c measures what `up` delivers: both reaches are up's
    assert ab.regions == {"up": 1.0} and bc.regions == {"up": 1.0}
    assert res.by_region == pytest.approx({"up": ab.addition + bc.addition})


def test_concentration_increments_without_flow_and_split_at_the_border() -> None:
    conc, _ = _series()
    res = attribute_reaches(SECTIONS, conc, 6, 12, 1.0, 5.0, "nh3n", "mg/L", cross_border="split", border_km={("up", "down"): 20.0})
    assert res.basis == "concentration" and res.unit == "mg/L"
    ab, bc = res.reaches
    assert ab.addition == pytest.approx(0.5)  # the pulse cancels only if the 2 h lag is applied
    assert bc.addition == pytest.approx(0.5)
    assert bc.regions == {"up": 0.5, "down": 0.5}  # border at km 20, halfway along km 10..30
    assert res.by_region == pytest.approx({"up": 0.75, "down": 0.25})


def test_without_the_lag_the_pulse_would_not_cancel() -> None:
    conc, _ = _series()
    slow = attribute_reaches(SECTIONS, conc, 6, 12, 1.0, 1e6, "nh3n", "mg/L")  # ~zero travel time
    assert slow.reaches[1].addition != pytest.approx(0.5)


def test_steps_before_the_data_are_left_out_and_records_validate() -> None:
    conc, flow = _series()
    res = attribute_reaches(SECTIONS, conc, 0, 12, 1.0, 5.0, "nh3n", "mg/L", flow=flow)
    assert res.reaches[0].n_steps == 10 and res.reaches[1].n_steps == 8  # t - tau < 0 has no upstream value
    records = water_records(res, NET, start_ms=1_700_000_000_000, step_ms=3_600_000)
    assert len(records) == 2
    for rec in records:
        assert validation_errors("apportionment", rec) == []
    assert records[1]["receptor"] == "w-b>w-c" and records[1]["affected_regions"] == ["down"]
    assert records[1]["origin_region"] == "up"
