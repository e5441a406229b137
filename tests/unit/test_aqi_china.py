"""HJ 633-2012 and HJ 633-2026: breakpoint vectors, rules, categories, CLI and table loading.

The vectors below were worked from the HJ 633 tables (STANDARDS.md) with exact
fractions, independently of alerts/standards (a separate transcription of the
tables), at, 0.1 ug/m3 (CO: 0.01 mg/m3) below and above every breakpoint. A
few by hand, for the reader:
  pm25_24h 34.9 (2012): 0 + 50/35*34.9 = 49.857 -> carried up to 50
  pm25_24h 35.1 (2012): 50 + 50/40*0.1 = 50.125 -> 51
  pm25_24h 75 (2026):  100 + 50/55*15  = 113.64 -> 114 (2012: exactly 100)
'beyond' = above the top breakpoint (reported 500, flagged); 'deferred' = the
item has no sub-index of its own there (Table 1 notes (2)/(3)).
"""

from __future__ import annotations

import json
import math
from datetime import date
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from alerts.standards.aqi import (
    InsufficientData,
    UnknownItem,
    china_aqi,
    china_aqi_daily,
    china_aqi_realtime,
    compute_aqi,
    sub_index,
)
from alerts.standards.cli import aqi_command
from alerts.standards.tables import DATA_DIR, StandardLookupError, load_aqi_edition, load_registry, registry
from alerts.standards.vectorised import sub_index_array
from schemas.errors import ConfigError

E2012 = registry().aqi_edition("china", date(2026, 2, 28))
E2026 = registry().aqi_edition("china", date(2026, 3, 1))

HJ633_2012_VECTORS: list[tuple[str, str, int | str]] = [
    ('pm25_24h', '0', 0),
    ('pm25_24h', '0.1', 1),
    ('pm25_24h', '34.9', 50),
    ('pm25_24h', '35', 50),
    ('pm25_24h', '35.1', 51),
    ('pm25_24h', '74.9', 100),
    ('pm25_24h', '75', 100),
    ('pm25_24h', '75.1', 101),
    ('pm25_24h', '114.9', 150),
    ('pm25_24h', '115', 150),
    ('pm25_24h', '115.1', 151),
    ('pm25_24h', '149.9', 200),
    ('pm25_24h', '150', 200),
    ('pm25_24h', '150.1', 201),
    ('pm25_24h', '249.9', 300),
    ('pm25_24h', '250', 300),
    ('pm25_24h', '250.1', 301),
    ('pm25_24h', '349.9', 400),
    ('pm25_24h', '350', 400),
    ('pm25_24h', '350.1', 401),
    ('pm25_24h', '499.9', 500),
    ('pm25_24h', '500', 500),
    ('pm25_24h', '500.1', 'beyond'),
    ('pm10_24h', '0', 0),
    ('pm10_24h', '0.1', 1),
    ('pm10_24h', '49.9', 50),
    ('pm10_24h', '50', 50),
    ('pm10_24h', '50.1', 51),
    ('pm10_24h', '149.9', 100),
    ('pm10_24h', '150', 100),
    ('pm10_24h', '150.1', 101),
    ('pm10_24h', '249.9', 150),
    ('pm10_24h', '250', 150),
    ('pm10_24h', '250.1', 151),
    ('pm10_24h', '349.9', 200),
    ('pm10_24h', '350', 200),
    ('pm10_24h', '350.1', 201),
    ('pm10_24h', '419.9', 300),
    ('pm10_24h', '420', 300),
    ('pm10_24h', '420.1', 301),
    ('pm10_24h', '499.9', 400),
    ('pm10_24h', '500', 400),
    ('pm10_24h', '500.1', 401),
    ('pm10_24h', '599.9', 500),
    ('pm10_24h', '600', 500),
    ('pm10_24h', '600.1', 'beyond'),
    ('so2_24h', '0', 0),
    ('so2_24h', '0.1', 1),
    ('so2_24h', '49.9', 50),
    ('so2_24h', '50', 50),
    ('so2_24h', '50.1', 51),
    ('so2_24h', '149.9', 100),
    ('so2_24h', '150', 100),
    ('so2_24h', '150.1', 101),
    ('so2_24h', '474.9', 150),
    ('so2_24h', '475', 150),
    ('so2_24h', '475.1', 151),
    ('so2_24h', '799.9', 200),
    ('so2_24h', '800', 200),
    ('so2_24h', '800.1', 201),
    ('so2_24h', '1599.9', 300),
    ('so2_24h', '1600', 300),
    ('so2_24h', '1600.1', 301),
    ('so2_24h', '2099.9', 400),
    ('so2_24h', '2100', 400),
    ('so2_24h', '2100.1', 401),
    ('so2_24h', '2619.9', 500),
    ('so2_24h', '2620', 500),
    ('so2_24h', '2620.1', 'beyond'),
    ('so2_1h', '0', 0),
    ('so2_1h', '0.1', 1),
    ('so2_1h', '149.9', 50),
    ('so2_1h', '150', 50),
    ('so2_1h', '150.1', 51),
    ('so2_1h', '499.9', 100),
    ('so2_1h', '500', 100),
    ('so2_1h', '500.1', 101),
    ('so2_1h', '649.9', 150),
    ('so2_1h', '650', 150),
    ('so2_1h', '650.1', 151),
    ('so2_1h', '799.9', 200),
    ('so2_1h', '800', 200),
    ('so2_1h', '800.1', 'deferred'),
    ('no2_24h', '0', 0),
    ('no2_24h', '0.1', 1),
    ('no2_24h', '39.9', 50),
    ('no2_24h', '40', 50),
    ('no2_24h', '40.1', 51),
    ('no2_24h', '79.9', 100),
    ('no2_24h', '80', 100),
    ('no2_24h', '80.1', 101),
    ('no2_24h', '179.9', 150),
    ('no2_24h', '180', 150),
    ('no2_24h', '180.1', 151),
    ('no2_24h', '279.9', 200),
    ('no2_24h', '280', 200),
    ('no2_24h', '280.1', 201),
    ('no2_24h', '564.9', 300),
    ('no2_24h', '565', 300),
    ('no2_24h', '565.1', 301),
    ('no2_24h', '749.9', 400),
    ('no2_24h', '750', 400),
    ('no2_24h', '750.1', 401),
    ('no2_24h', '939.9', 500),
    ('no2_24h', '940', 500),
    ('no2_24h', '940.1', 'beyond'),
    ('no2_1h', '0', 0),
    ('no2_1h', '0.1', 1),
    ('no2_1h', '99.9', 50),
    ('no2_1h', '100', 50),
    ('no2_1h', '100.1', 51),
    ('no2_1h', '199.9', 100),
    ('no2_1h', '200', 100),
    ('no2_1h', '200.1', 101),
    ('no2_1h', '699.9', 150),
    ('no2_1h', '700', 150),
    ('no2_1h', '700.1', 151),
    ('no2_1h', '1199.9', 200),
    ('no2_1h', '1200', 200),
    ('no2_1h', '1200.1', 201),
    ('no2_1h', '2339.9', 300),
    ('no2_1h', '2340', 300),
    ('no2_1h', '2340.1', 301),
    ('no2_1h', '3089.9', 400),
    ('no2_1h', '3090', 400),
    ('no2_1h', '3090.1', 401),
    ('no2_1h', '3839.9', 500),
    ('no2_1h', '3840', 500),
    ('no2_1h', '3840.1', 'beyond'),
    ('co_24h', '0', 0),
    ('co_24h', '0.01', 1),
    ('co_24h', '1.99', 50),
    ('co_24h', '2', 50),
    ('co_24h', '2.01', 51),
    ('co_24h', '3.99', 100),
    ('co_24h', '4', 100),
    ('co_24h', '4.01', 101),
    ('co_24h', '13.99', 150),
    ('co_24h', '14', 150),
    ('co_24h', '14.01', 151),
    ('co_24h', '23.99', 200),
    ('co_24h', '24', 200),
    ('co_24h', '24.01', 201),
    ('co_24h', '35.99', 300),
    ('co_24h', '36', 300),
    ('co_24h', '36.01', 301),
    ('co_24h', '47.99', 400),
    ('co_24h', '48', 400),
    ('co_24h', '48.01', 401),
    ('co_24h', '59.99', 500),
    ('co_24h', '60', 500),
    ('co_24h', '60.01', 'beyond'),
    ('co_1h', '0', 0),
    ('co_1h', '0.01', 1),
    ('co_1h', '4.99', 50),
    ('co_1h', '5', 50),
    ('co_1h', '5.01', 51),
    ('co_1h', '9.99', 100),
    ('co_1h', '10', 100),
    ('co_1h', '10.01', 101),
    ('co_1h', '34.99', 150),
    ('co_1h', '35', 150),
    ('co_1h', '35.01', 151),
    ('co_1h', '59.99', 200),
    ('co_1h', '60', 200),
    ('co_1h', '60.01', 201),
    ('co_1h', '89.99', 300),
    ('co_1h', '90', 300),
    ('co_1h', '90.01', 301),
    ('co_1h', '119.99', 400),
    ('co_1h', '120', 400),
    ('co_1h', '120.01', 401),
    ('co_1h', '149.99', 500),
    ('co_1h', '150', 500),
    ('co_1h', '150.01', 'beyond'),
    ('o3_1h', '0', 0),
    ('o3_1h', '0.1', 1),
    ('o3_1h', '159.9', 50),
    ('o3_1h', '160', 50),
    ('o3_1h', '160.1', 51),
    ('o3_1h', '199.9', 100),
    ('o3_1h', '200', 100),
    ('o3_1h', '200.1', 101),
    ('o3_1h', '299.9', 150),
    ('o3_1h', '300', 150),
    ('o3_1h', '300.1', 151),
    ('o3_1h', '399.9', 200),
    ('o3_1h', '400', 200),
    ('o3_1h', '400.1', 201),
    ('o3_1h', '799.9', 300),
    ('o3_1h', '800', 300),
    ('o3_1h', '800.1', 301),
    ('o3_1h', '999.9', 400),
    ('o3_1h', '1000', 400),
    ('o3_1h', '1000.1', 401),
    ('o3_1h', '1199.9', 500),
    ('o3_1h', '1200', 500),
    ('o3_1h', '1200.1', 'beyond'),
    ('o3_8h', '0', 0),
    ('o3_8h', '0.1', 1),
    ('o3_8h', '99.9', 50),
    ('o3_8h', '100', 50),
    ('o3_8h', '100.1', 51),
    ('o3_8h', '159.9', 100),
    ('o3_8h', '160', 100),
    ('o3_8h', '160.1', 101),
    ('o3_8h', '214.9', 150),
    ('o3_8h', '215', 150),
    ('o3_8h', '215.1', 151),
    ('o3_8h', '264.9', 200),
    ('o3_8h', '265', 200),
    ('o3_8h', '265.1', 201),
    ('o3_8h', '799.9', 300),
    ('o3_8h', '800', 300),
    ('o3_8h', '800.1', 'deferred'),
]
HJ633_2026_VECTORS: list[tuple[str, str, int | str]] = [
    ('pm25_24h', '0', 0),
    ('pm25_24h', '0.1', 1),
    ('pm25_24h', '34.9', 50),
    ('pm25_24h', '35', 50),
    ('pm25_24h', '35.1', 51),
    ('pm25_24h', '59.9', 100),
    ('pm25_24h', '60', 100),
    ('pm25_24h', '60.1', 101),
    ('pm25_24h', '114.9', 150),
    ('pm25_24h', '115', 150),
    ('pm25_24h', '115.1', 151),
    ('pm25_24h', '149.9', 200),
    ('pm25_24h', '150', 200),
    ('pm25_24h', '150.1', 201),
    ('pm25_24h', '249.9', 300),
    ('pm25_24h', '250', 300),
    ('pm25_24h', '250.1', 301),
    ('pm25_24h', '349.9', 400),
    ('pm25_24h', '350', 400),
    ('pm25_24h', '350.1', 401),
    ('pm25_24h', '499.9', 500),
    ('pm25_24h', '500', 500),
    ('pm25_24h', '500.1', 'beyond'),
    ('pm10_24h', '0', 0),
    ('pm10_24h', '0.1', 1),
    ('pm10_24h', '49.9', 50),
    ('pm10_24h', '50', 50),
    ('pm10_24h', '50.1', 51),
    ('pm10_24h', '119.9', 100),
    ('pm10_24h', '120', 100),
    ('pm10_24h', '120.1', 101),
    ('pm10_24h', '249.9', 150),
    ('pm10_24h', '250', 150),
    ('pm10_24h', '250.1', 151),
    ('pm10_24h', '349.9', 200),
    ('pm10_24h', '350', 200),
    ('pm10_24h', '350.1', 201),
    ('pm10_24h', '419.9', 300),
    ('pm10_24h', '420', 300),
    ('pm10_24h', '420.1', 301),
    ('pm10_24h', '499.9', 400),
    ('pm10_24h', '500', 400),
    ('pm10_24h', '500.1', 401),
    ('pm10_24h', '599.9', 500),
    ('pm10_24h', '600', 500),
    ('pm10_24h', '600.1', 'beyond'),
    ('so2_24h', '0', 0),
    ('so2_24h', '0.1', 1),
    ('so2_24h', '49.9', 50),
    ('so2_24h', '50', 50),
    ('so2_24h', '50.1', 51),
    ('so2_24h', '149.9', 100),
    ('so2_24h', '150', 100),
    ('so2_24h', '150.1', 101),
    ('so2_24h', '474.9', 150),
    ('so2_24h', '475', 150),
    ('so2_24h', '475.1', 151),
    ('so2_24h', '799.9', 200),
    ('so2_24h', '800', 200),
    ('so2_24h', '800.1', 201),
    ('so2_24h', '1599.9', 300),
    ('so2_24h', '1600', 300),
    ('so2_24h', '1600.1', 301),
    ('so2_24h', '2099.9', 400),
    ('so2_24h', '2100', 400),
    ('so2_24h', '2100.1', 401),
    ('so2_24h', '2619.9', 500),
    ('so2_24h', '2620', 500),
    ('so2_24h', '2620.1', 'beyond'),
    ('so2_1h', '0', 0),
    ('so2_1h', '0.1', 1),
    ('so2_1h', '149.9', 50),
    ('so2_1h', '150', 50),
    ('so2_1h', '150.1', 51),
    ('so2_1h', '499.9', 100),
    ('so2_1h', '500', 100),
    ('so2_1h', '500.1', 101),
    ('so2_1h', '649.9', 150),
    ('so2_1h', '650', 150),
    ('so2_1h', '650.1', 151),
    ('so2_1h', '799.9', 200),
    ('so2_1h', '800', 200),
    ('so2_1h', '800.1', 'deferred'),
    ('no2_24h', '0', 0),
    ('no2_24h', '0.1', 1),
    ('no2_24h', '39.9', 50),
    ('no2_24h', '40', 50),
    ('no2_24h', '40.1', 51),
    ('no2_24h', '79.9', 100),
    ('no2_24h', '80', 100),
    ('no2_24h', '80.1', 101),
    ('no2_24h', '179.9', 150),
    ('no2_24h', '180', 150),
    ('no2_24h', '180.1', 151),
    ('no2_24h', '279.9', 200),
    ('no2_24h', '280', 200),
    ('no2_24h', '280.1', 201),
    ('no2_24h', '564.9', 300),
    ('no2_24h', '565', 300),
    ('no2_24h', '565.1', 301),
    ('no2_24h', '749.9', 400),
    ('no2_24h', '750', 400),
    ('no2_24h', '750.1', 401),
    ('no2_24h', '939.9', 500),
    ('no2_24h', '940', 500),
    ('no2_24h', '940.1', 'beyond'),
    ('no2_1h', '0', 0),
    ('no2_1h', '0.1', 1),
    ('no2_1h', '99.9', 50),
    ('no2_1h', '100', 50),
    ('no2_1h', '100.1', 51),
    ('no2_1h', '199.9', 100),
    ('no2_1h', '200', 100),
    ('no2_1h', '200.1', 101),
    ('no2_1h', '699.9', 150),
    ('no2_1h', '700', 150),
    ('no2_1h', '700.1', 151),
    ('no2_1h', '1199.9', 200),
    ('no2_1h', '1200', 200),
    ('no2_1h', '1200.1', 201),
    ('no2_1h', '2339.9', 300),
    ('no2_1h', '2340', 300),
    ('no2_1h', '2340.1', 301),
    ('no2_1h', '3089.9', 400),
    ('no2_1h', '3090', 400),
    ('no2_1h', '3090.1', 401),
    ('no2_1h', '3839.9', 500),
    ('no2_1h', '3840', 500),
    ('no2_1h', '3840.1', 'beyond'),
    ('co_24h', '0', 0),
    ('co_24h', '0.01', 1),
    ('co_24h', '1.99', 50),
    ('co_24h', '2', 50),
    ('co_24h', '2.01', 51),
    ('co_24h', '3.99', 100),
    ('co_24h', '4', 100),
    ('co_24h', '4.01', 101),
    ('co_24h', '13.99', 150),
    ('co_24h', '14', 150),
    ('co_24h', '14.01', 151),
    ('co_24h', '23.99', 200),
    ('co_24h', '24', 200),
    ('co_24h', '24.01', 201),
    ('co_24h', '35.99', 300),
    ('co_24h', '36', 300),
    ('co_24h', '36.01', 301),
    ('co_24h', '47.99', 400),
    ('co_24h', '48', 400),
    ('co_24h', '48.01', 401),
    ('co_24h', '59.99', 500),
    ('co_24h', '60', 500),
    ('co_24h', '60.01', 'beyond'),
    ('co_1h', '0', 0),
    ('co_1h', '0.01', 1),
    ('co_1h', '4.99', 50),
    ('co_1h', '5', 50),
    ('co_1h', '5.01', 51),
    ('co_1h', '9.99', 100),
    ('co_1h', '10', 100),
    ('co_1h', '10.01', 101),
    ('co_1h', '34.99', 150),
    ('co_1h', '35', 150),
    ('co_1h', '35.01', 151),
    ('co_1h', '59.99', 200),
    ('co_1h', '60', 200),
    ('co_1h', '60.01', 201),
    ('co_1h', '89.99', 300),
    ('co_1h', '90', 300),
    ('co_1h', '90.01', 301),
    ('co_1h', '119.99', 400),
    ('co_1h', '120', 400),
    ('co_1h', '120.01', 401),
    ('co_1h', '149.99', 500),
    ('co_1h', '150', 500),
    ('co_1h', '150.01', 'beyond'),
    ('o3_1h', '0', 0),
    ('o3_1h', '0.1', 1),
    ('o3_1h', '159.9', 50),
    ('o3_1h', '160', 50),
    ('o3_1h', '160.1', 51),
    ('o3_1h', '199.9', 100),
    ('o3_1h', '200', 100),
    ('o3_1h', '200.1', 101),
    ('o3_1h', '299.9', 150),
    ('o3_1h', '300', 150),
    ('o3_1h', '300.1', 151),
    ('o3_1h', '399.9', 200),
    ('o3_1h', '400', 200),
    ('o3_1h', '400.1', 201),
    ('o3_1h', '799.9', 300),
    ('o3_1h', '800', 300),
    ('o3_1h', '800.1', 301),
    ('o3_1h', '999.9', 400),
    ('o3_1h', '1000', 400),
    ('o3_1h', '1000.1', 401),
    ('o3_1h', '1199.9', 500),
    ('o3_1h', '1200', 500),
    ('o3_1h', '1200.1', 'beyond'),
    ('o3_8h', '0', 0),
    ('o3_8h', '0.1', 1),
    ('o3_8h', '99.9', 50),
    ('o3_8h', '100', 50),
    ('o3_8h', '100.1', 51),
    ('o3_8h', '159.9', 100),
    ('o3_8h', '160', 100),
    ('o3_8h', '160.1', 101),
    ('o3_8h', '214.9', 150),
    ('o3_8h', '215', 150),
    ('o3_8h', '215.1', 151),
    ('o3_8h', '264.9', 200),
    ('o3_8h', '265', 200),
    ('o3_8h', '265.1', 201),
    ('o3_8h', '799.9', 300),
    ('o3_8h', '800', 300),
    ('o3_8h', '800.1', 'deferred'),
]


def _check(edition, item: str, conc: str, expected: int | str) -> None:
    s = sub_index(edition, item, conc)
    if expected == "beyond":
        assert (s.value, s.status, s.beyond) == (500, "beyond_table", True)
    elif expected == "deferred":
        assert (s.value, s.status) == (None, "deferred")
    else:
        assert (s.value, s.status) == (expected, "table"), s
    # The same number as a float must give the same answer (floats read through their repr).
    assert sub_index(edition, item, float(conc)).value == s.value


@pytest.mark.parametrize(("item", "conc", "expected"), HJ633_2012_VECTORS)
def test_hj633_2012_breakpoint_vectors(item: str, conc: str, expected: int | str) -> None:
    assert E2012.standard_id == "HJ 633-2012"
    _check(E2012, item, conc, expected)


@pytest.mark.parametrize(("item", "conc", "expected"), HJ633_2026_VECTORS)
def test_hj633_2026_breakpoint_vectors(item: str, conc: str, expected: int | str) -> None:
    assert E2026.standard_id == "HJ 633-2026"
    _check(E2026, item, conc, expected)


def test_one_hour_pm_uses_the_24h_column() -> None:
    for edition in (E2012, E2026):
        for conc in ("0", "34.9", "60", "75", "75.1", "499.9"):
            assert sub_index(edition, "pm25_1h", conc).value == sub_index(edition, "pm25_24h", conc).value
    assert sub_index(E2026, "pm10_1h", "120").value == 100


def test_edition_is_chosen_by_the_readings_date() -> None:
    assert registry().aqi_edition("china", date(2026, 2, 28)).edition == "2012"
    assert registry().aqi_edition("china", date(2026, 3, 1)).edition == "2026"
    assert china_aqi_daily({"pm25": 75}, date(2026, 2, 28)).aqi == 100
    assert china_aqi_daily({"pm25": 75}, date(2026, 3, 1)).aqi == 114
    assert china_aqi_daily({"pm10": 150}, date(2026, 2, 28)).aqi == 100
    assert china_aqi_daily({"pm10": 150}, date(2026, 3, 1)).aqi == 112  # 100 + 50/130*30 = 111.54
    with pytest.raises(StandardLookupError, match="no china edition in force on 2015-12-31"):
        registry().aqi_edition("china", date(2015, 12, 31))


@pytest.mark.parametrize(("edition", "item", "conc", "expected"), [
    # exact value is an integer, a naive float formula lands just above it and ceil adds 1
    ("2012", "co_24h", "2.2", 55),   # 50 + 25*0.2 = 55; float: 55.00000000000001
    ("2012", "co_24h", "0.28", 7),
    ("2012", "co_1h", "65.4", 218),  # 200 + 100/30*5.4 = 218
    ("2026", "pm25_24h", "4.9", 7),  # 50/35*4.9 = 7
    ("2026", "pm10_24h", "352.1", 203),  # 200 + 100/70*2.1 = 203
])
def test_ceil_is_exact_not_float_noise(edition: str, item: str, conc: str, expected: int) -> None:
    e = E2012 if edition == "2012" else E2026
    row = next(r for r in e.tables[item].rows if r.c_lo <= Decimal(conc) <= r.c_hi)
    c_lo, c_hi, i_lo, i_hi = float(row.c_lo), float(row.c_hi), row.i_lo, row.i_hi
    naive = (i_hi - i_lo) / (c_hi - c_lo) * (float(conc) - c_lo) + i_lo
    assert math.ceil(naive) == expected + 1  # the trap this test guards against is real
    assert sub_index(e, item, float(conc)).value == expected
    assert sub_index(e, item, conc).value == expected


def test_vectorised_equals_scalar_everywhere() -> None:
    rng = np.random.default_rng(20261122)
    for e in (E2012, E2026):
        for item, table in e.tables.items():
            top = float(table.c_max)
            values = list(rng.uniform(0, top * 1.2, 3000))
            values += list(np.round(rng.uniform(0, top * 1.2, 2000), 1))
            for bp in table.breakpoints():
                b = float(bp)
                values += [b, np.nextafter(b, -1.0) if b > 0 else b, np.nextafter(b, np.inf), b + 0.1, max(b - 0.1, 0)]
            arr = np.array(values)
            got = sub_index_array(e, item, arr)
            want = np.array([np.nan if (v := sub_index(e, item, float(x)).value) is None else v for x in arr])
            assert np.array_equal(got, want, equal_nan=True), item
    with pytest.raises(ValueError):
        sub_index_array(E2012, "pm25_24h", [1.0, -0.5])


def test_aqi_is_the_max_and_primary_pollutants_tie() -> None:
    r = china_aqi_daily({"pm25": 60, "pm10": 120, "so2": 10, "no2": 15, "co": 0.5, "o3_8h": 60}, date(2026, 11, 22))
    assert r.aqi == 100
    assert set(r.primary_pollutants) == {"pm25_24h", "pm10_24h"}
    assert r.exceeding_pollutants == ()
    assert (r.standard_id, r.edition, r.report) == ("HJ 633-2026", "2026", "daily")
    by_item = {s.item: s for s in r.sub_indices}
    assert by_item["so2_24h"].value == 10  # 50/50*10
    assert by_item["co_24h"].value == 13  # 50/2*0.5 = 12.5 -> 13
    assert by_item["pm25_24h"].concentration == Decimal(60) and by_item["pm25_24h"].row is not None


def test_primary_pollutant_only_above_50() -> None:
    assert china_aqi_daily({"pm25": 35, "pm10": 20}, date(2026, 11, 22)).primary_pollutants == ()
    r = china_aqi_daily({"pm25": "35.1", "pm10": 20}, date(2026, 11, 22))
    assert (r.aqi, r.primary_pollutants) == (51, ("pm25_24h",))


def test_exceeding_pollutants_above_100() -> None:
    r = china_aqi_daily({"pm25": 80, "pm10": 140, "o3_8h": 120}, date(2026, 11, 22))
    assert r.aqi == 119  # 100 + 50/55*20 = 118.18 -> 119
    assert r.primary_pollutants == ("pm25_24h",)
    assert r.exceeding_pollutants == ("pm25_24h", "pm10_24h")
    assert (r.category.name, r.category.colour) == ("Lightly polluted", "#FF7E00")


def test_so2_1h_above_800_reports_the_24h_sub_index() -> None:
    on = date(2025, 6, 1)
    at = china_aqi_realtime({"so2": 800, "pm25": 10}, on)
    assert at.aqi == 200  # exactly the top breakpoint: its own sub-index
    r = china_aqi_realtime({"so2": 801, "so2_24h": 700, "pm25": 10}, on)
    by_item = {s.item: s for s in r.sub_indices}
    assert by_item["so2_1h"].status == "substituted" and by_item["so2_1h"].source_item == "so2_24h"
    assert by_item["so2_1h"].value == 185  # 150 + 50/325*225 = 184.6 -> 185
    assert not by_item["so2_24h"].counted
    assert (r.aqi, r.primary_pollutants) == (185, ("so2_1h",))
    with pytest.raises(InsufficientData, match="so2_1h=801 ug/m3 is above 800.*so2_24h"):
        china_aqi_realtime({"so2": 801, "pm25": 10}, on)


def test_o3_8h_above_800_reports_the_1h_sub_index() -> None:
    r = china_aqi_daily({"o3_8h": 801, "o3_1h": 900, "pm25": 10}, date(2025, 6, 1))
    by_item = {s.item: s for s in r.sub_indices}
    assert by_item["o3_8h"].value == 350  # from o3_1h: 300 + 100/200*100
    assert not by_item["o3_1h"].counted
    assert (r.aqi, r.primary_pollutants) == (350, ("o3_8h",))
    with pytest.raises(InsufficientData, match="o3_1h"):
        china_aqi_daily({"o3_8h": 900}, date(2025, 6, 1))


def test_the_2026_rule_alternative_is_data() -> None:
    # The 2026 file keeps the 2012 rule (unverified) and records the other reading.
    rule = E2026.rules["so2_1h"]
    assert (rule.action, rule.with_item, rule.verified) == ("substitute", "so2_24h", False)
    raw = (DATA_DIR / "hj633-2026.yaml").read_text()
    assert "alternative: {action: fixed, index: 200}" in raw


def test_fixed_rule_when_data_says_so(tmp_path: Path) -> None:
    text = (DATA_DIR / "hj633-2026.yaml").read_text().replace(
        "    action: substitute\n    with_item: so2_24h\n", "    action: fixed\n    index: 200\n", 1)
    edition = load_aqi_edition(_write(tmp_path, "fixed.yaml", text))
    r = compute_aqi(edition, {"so2_1h": 2000, "pm25_1h": 10}, "realtime")
    assert (r.aqi, r.primary_pollutants) == (200, ("so2_1h",))
    assert sub_index_array(edition, "so2_1h", [2000.0, 800.0]).tolist() == [200.0, 200.0]


def test_above_the_top_breakpoint_is_500_beyond_table() -> None:
    r = china_aqi_daily({"pm25": 600, "pm10": 100}, date(2026, 11, 22))
    assert (r.aqi, r.beyond_table, r.category.level, r.category.name) == (500, True, 6, "Severely polluted")
    r = china_aqi_daily({"pm25": 500, "pm10": 100}, date(2026, 11, 22))
    assert (r.aqi, r.beyond_table) == (500, False)


@pytest.mark.parametrize(("index", "level", "name", "colour"), [
    (0, 1, "Excellent", "#00E400"), (50, 1, "Excellent", "#00E400"),
    (51, 2, "Good", "#FFFF00"), (100, 2, "Good", "#FFFF00"),
    (101, 3, "Lightly polluted", "#FF7E00"), (150, 3, "Lightly polluted", "#FF7E00"),
    (151, 4, "Moderately polluted", "#FF0000"), (200, 4, "Moderately polluted", "#FF0000"),
    (201, 5, "Heavily polluted", "#99004C"), (300, 5, "Heavily polluted", "#99004C"),
    (301, 6, "Severely polluted", "#7E0023"), (500, 6, "Severely polluted", "#7E0023"),
])
def test_categories(index: int, level: int, name: str, colour: str) -> None:
    for e in (E2012, E2026):
        c = e.category(index)
        assert (c.level, c.name, c.colour) == (level, name, colour)
    assert E2012.category(51).local_name == "良"
    with pytest.raises(ValueError):
        E2012.category(501)


def test_realtime_counts_the_1h_items_only() -> None:
    r = china_aqi_realtime({"pm25": 30, "o3_8h": 300, "pm25_24h": 90}, date(2026, 11, 22))
    assert r.aqi == 43  # pm25_1h: 50/35*30 = 42.86 -> 43
    by_item = {s.item: s for s in r.sub_indices}
    assert by_item["o3_8h"].value == 207 and not by_item["o3_8h"].counted  # 200 + 100/535*35 = 206.5 -> 207
    assert by_item["pm25_24h"].value == 128 and not by_item["pm25_24h"].counted  # 100 + 50/55*30 = 127.3 -> 128
    assert r.primary_pollutants == ()
    # A shown-only 8-h O3 above 800 neither fails the report nor takes the 1-h O3 out of the AQI.
    r = china_aqi_realtime({"o3": 900, "o3_8h": 850}, date(2026, 11, 22))
    by_item = {s.item: s for s in r.sub_indices}
    assert (r.aqi, r.primary_pollutants) == (350, ("o3_1h",))  # 300 + 100/200*100
    assert by_item["o3_1h"].counted and not by_item["o3_8h"].counted
    assert china_aqi_realtime({"o3": 100, "o3_8h": 850}, date(2026, 11, 22)).aqi == 32  # 50/160*100 = 31.25


def test_inputs_are_checked() -> None:
    on = date(2026, 11, 22)
    with pytest.raises(UnknownItem, match="unknown pollutant 'voc'"):
        china_aqi_daily({"voc": 3}, on)
    with pytest.raises(UnknownItem, match="so2_1h is not part of the HJ 633-2026 daily report"):
        china_aqi_daily({"so2_1h": 3}, on)
    with pytest.raises(ValueError, match="must not be negative"):
        china_aqi_daily({"pm25": -1}, on)
    for bad in (float("nan"), float("inf"), "abc", True):
        with pytest.raises(ValueError):
            china_aqi_daily({"pm25": bad}, on)
    with pytest.raises(ValueError, match="given twice"):
        china_aqi_daily({"pm25": 3, "pm25_24h": 4}, on)
    with pytest.raises(InsufficientData):
        china_aqi_daily({}, on)
    with pytest.raises(UnknownItem):
        china_aqi({"pm25": 3}, on, report="weekly")


def test_unverified_cells_are_listed() -> None:
    assert not any(u.key == "tables.pm25_24h" for u in E2012.unverified)
    pm25 = next(u for u in E2026.unverified if u.key == "tables.pm25_24h")
    assert "60" not in pm25.what.split(", ") and "35" in pm25.what
    keys = {u.key for u in E2026.unverified}
    assert {"tables.so2_24h", "tables.o3_8h", "rules[0]", "rules[1]", "method", "categories"} <= keys
    r = china_aqi_daily({"pm25": 60}, date(2026, 11, 22))
    assert r.verified is False


# ---------------------------------------------------------------- CLI


def test_cli_text_and_json() -> None:
    runner = CliRunner()
    out = runner.invoke(aqi_command, ["--standard", "china", "--date", "2026-11-22", "pm25=80", "pm10=140", "o3_8h=120"])
    assert out.exit_code == 0, out.output
    assert "HJ 633-2026 (edition 2026" in out.output
    assert "AQI 119: level 3 Lightly polluted (轻度污染), colour #FF7E00" in out.output
    assert "Primary pollutant(s): pm25_24h" in out.output
    out = runner.invoke(aqi_command, ["--date", "2026-01-10", "--json", "pm25=75"])
    data = json.loads(out.output)
    assert (data["standard_id"], data["aqi"], data["sub_indices"][0]["item"]) == ("HJ 633-2012", 100, "pm25_24h")


@pytest.mark.parametrize(("args", "message"), [
    (["voc=3"], "unknown pollutant 'voc'"),
    (["pm25=-3"], "must not be negative"),
    (["pm25=abc"], "not a number"),
    (["pm25"], "'pm25' is not NAME=VALUE"),
    (["--date", "2026-13-01", "pm25=3"], "--date: '2026-13-01' is not a date"),
    (["--date", "2001-01-01", "pm25=3"], "no china edition in force"),
    (["--report", "realtime", "--date", "2026-11-22", "so2=900"], "Give so2_24h as well"),
])
def test_cli_bad_input_is_one_line(args: list[str], message: str) -> None:
    out = CliRunner().invoke(aqi_command, args)
    assert out.exit_code != 0
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], out.output


# ---------------------------------------------------------------- table loading


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


ORIGINAL = (DATA_DIR / "hj633-2012.yaml").read_text()


@pytest.mark.parametrize(("old", "new", "key", "reason"), [
    ("      - [35, 75, 50, 100]\n", "      - [35, 30, 50, 100]\n", "tables.pm25_24h.rows[1]", "low < high"),
    ("      - [75, 115, 100, 150]\n", "      - [76, 115, 100, 150]\n", "tables.pm25_24h.rows[2]", "not contiguous"),
    ("      - [75, 115, 100, 150]\n", "      - [75, 115, 101, 150]\n", "tables.pm25_24h.rows[2]", "index ranges not contiguous"),
    ("  rounding: ceil\n", "  rounding: nearest\n", "method.rounding", "'ceil' or 'half_up'"),
    ("    above: 800\n    action: substitute\n    with_item: so2_24h\n",
     "    above: 700\n    action: substitute\n    with_item: so2_24h\n", "rules[0].above", "must equal the top"),
    ("    with_item: so2_24h\n", "    with_item: so2_48h\n", "rules[0].with_item", "another table"),
    ("  - item: so2_1h\n", "  - item: so2_2h\n", "rules[0].item", "unknown table"),
    ("{level: 2, low: 51,", "{level: 2, low: 52,", "categories.levels[1]", "contiguous"),
    ("  from: 2016-01-01\n", "  from: 2016-03-xx\n", "effective.from", "must be a date"),
    ("  from: 2016-01-01\n", "  from: 2016-13-01\n", "<yaml>", "month must be in 1..12"),
    ("    items: [so2_1h, no2_1h,", "    items: [so2_2h, no2_1h,", "reports.realtime.items", "table names"),
    ("    pollutant: pm25\n    averaging: 24h\n", "    averaging: 24h\n", "tables.pm25_24h.pollutant", "required"),
    ("    verified: false\n    reason: Composition", "    verified: false\n    basis: Composition",
     "reports.daily.reason", "needs a reason"),
    ("    same_as: pm25_24h\n", "    same_as: pm25_48h\n", "tables.pm25_1h.same_as", "unknown table"),
    ('colour: "#FFFF00"', 'colour: "yellow"', "categories.levels[1].colour", "#RRGGBB"),
])
def test_bad_tables_are_rejected_with_file_and_key(tmp_path: Path, old: str, new: str, key: str, reason: str) -> None:
    assert old in ORIGINAL
    path = _write(tmp_path, "bad.yaml", ORIGINAL.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_aqi_edition(path)
    assert (info.value.file, info.value.key) == (str(path), key)
    assert reason in info.value.reason


def test_table_ending_below_500_needs_a_rule(tmp_path: Path) -> None:
    start = ORIGINAL.index("rules:\n")
    end = ORIGINAL.index("\n# Which items a report counts")
    path = _write(tmp_path, "norules.yaml", ORIGINAL[:start] + "rules: []\n" + ORIGINAL[end:])
    with pytest.raises(ConfigError, match="so2_1h: ends at index 200 < 500: needs an above-table rule"):
        load_aqi_edition(path)


def test_registry_loads_all_and_rejects_colliding_editions(tmp_path: Path) -> None:
    reg = load_registry(DATA_DIR)
    assert [e.standard_id for e in reg.aqi_editions("china")] == ["HJ 633-2012", "HJ 633-2026"]
    _write(tmp_path, "a.yaml", ORIGINAL)
    _write(tmp_path, "b.yaml", ORIGINAL)
    with pytest.raises(ConfigError, match="same family and date as a.yaml"):
        load_registry(tmp_path)
    _write(tmp_path, "b.yaml", "kind: nonsense\n")
    with pytest.raises(ConfigError, match="must be 'aqi' or 'water'"):
        load_registry(tmp_path)
    _write(tmp_path, "b.yaml", "kind: [unclosed\n")
    with pytest.raises(ConfigError, match="<yaml>"):
        load_registry(tmp_path)
