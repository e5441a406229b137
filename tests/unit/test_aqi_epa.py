"""US EPA AQI, 2024 table (from 2024-05-06) and the 2018 TAD table before it.

Vectors worked from the breakpoint tables (STANDARDS.md; TAD EPA-454/B-18-007
Table 5 and EPA-454/B-24-002 Table 6) with exact fractions, independently of
alerts/standards: at each row's low and high, one truncation step below the
high, and half a step above low and high (which truncation must cut back). A
few by hand:
  pm25_24h 8.9 (2024):   50/9*8.9 = 49.44 -> 49
  pm25_24h 9.05 (2024):  truncated to 9.0 -> 50 (not 51)
  pm25_24h 35.3 (2024):  51 + 49/26.3*26.2 = 99.81 -> 100
'beyond' = above the top breakpoint (500, flagged beyond the AQI); 'deferred' =
the 8-h O3 / 1-h SO2 value defines no index there (1-h O3 / 24-h SO2 does);
'below' = under the first breakpoint of a table that starts above 0.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from click.testing import CliRunner

from alerts.standards.aqi import InsufficientData, UnknownItem, compute_aqi, epa_aqi, from_pipeline_units, sub_index
from alerts.standards.cli import aqi_command
from alerts.standards.tables import registry
from alerts.standards.units import convert, ppb_to_ugm3, ugm3_to_ppb
from alerts.standards.vectorised import sub_index_array

E2018 = registry().aqi_edition("epa", date(2024, 5, 5))
E2024 = registry().aqi_edition("epa", date(2024, 5, 6))
ON = date(2026, 11, 22)

EPA_2024_VECTORS: list[tuple[str, str, int | str]] = [
    ('pm25_24h', '0.0', 0),
    ('pm25_24h', '0.05', 0),
    ('pm25_24h', '8.9', 49),
    ('pm25_24h', '9.0', 50),
    ('pm25_24h', '9.05', 50),
    ('pm25_24h', '9.1', 51),
    ('pm25_24h', '9.15', 51),
    ('pm25_24h', '35.3', 100),
    ('pm25_24h', '35.4', 100),
    ('pm25_24h', '35.45', 100),
    ('pm25_24h', '35.5', 101),
    ('pm25_24h', '35.55', 101),
    ('pm25_24h', '55.3', 150),
    ('pm25_24h', '55.4', 150),
    ('pm25_24h', '55.45', 150),
    ('pm25_24h', '55.5', 151),
    ('pm25_24h', '55.55', 151),
    ('pm25_24h', '125.3', 200),
    ('pm25_24h', '125.4', 200),
    ('pm25_24h', '125.45', 200),
    ('pm25_24h', '125.5', 201),
    ('pm25_24h', '125.55', 201),
    ('pm25_24h', '225.3', 300),
    ('pm25_24h', '225.4', 300),
    ('pm25_24h', '225.45', 300),
    ('pm25_24h', '225.5', 301),
    ('pm25_24h', '225.55', 301),
    ('pm25_24h', '325.3', 500),
    ('pm25_24h', '325.4', 500),
    ('pm25_24h', '325.45', 500),
    ('pm25_24h', '325.5', 'beyond'),
    ('pm10_24h', '0', 0),
    ('pm10_24h', '0.5', 0),
    ('pm10_24h', '53', 49),
    ('pm10_24h', '54', 50),
    ('pm10_24h', '54.5', 50),
    ('pm10_24h', '55', 51),
    ('pm10_24h', '55.5', 51),
    ('pm10_24h', '153', 100),
    ('pm10_24h', '154', 100),
    ('pm10_24h', '154.5', 100),
    ('pm10_24h', '155', 101),
    ('pm10_24h', '155.5', 101),
    ('pm10_24h', '253', 150),
    ('pm10_24h', '254', 150),
    ('pm10_24h', '254.5', 150),
    ('pm10_24h', '255', 151),
    ('pm10_24h', '255.5', 151),
    ('pm10_24h', '353', 200),
    ('pm10_24h', '354', 200),
    ('pm10_24h', '354.5', 200),
    ('pm10_24h', '355', 201),
    ('pm10_24h', '355.5', 201),
    ('pm10_24h', '423', 299),
    ('pm10_24h', '424', 300),
    ('pm10_24h', '424.5', 300),
    ('pm10_24h', '425', 301),
    ('pm10_24h', '425.5', 301),
    ('pm10_24h', '603', 499),
    ('pm10_24h', '604', 500),
    ('pm10_24h', '604.5', 500),
    ('pm10_24h', '605', 'beyond'),
    ('o3_8h', '0.000', 0),
    ('o3_8h', '0.0005', 0),
    ('o3_8h', '0.053', 49),
    ('o3_8h', '0.054', 50),
    ('o3_8h', '0.0545', 50),
    ('o3_8h', '0.055', 51),
    ('o3_8h', '0.0555', 51),
    ('o3_8h', '0.069', 97),
    ('o3_8h', '0.070', 100),
    ('o3_8h', '0.0705', 100),
    ('o3_8h', '0.071', 101),
    ('o3_8h', '0.0715', 101),
    ('o3_8h', '0.084', 147),
    ('o3_8h', '0.085', 150),
    ('o3_8h', '0.0855', 150),
    ('o3_8h', '0.086', 151),
    ('o3_8h', '0.0865', 151),
    ('o3_8h', '0.104', 197),
    ('o3_8h', '0.105', 200),
    ('o3_8h', '0.1055', 200),
    ('o3_8h', '0.106', 201),
    ('o3_8h', '0.1065', 201),
    ('o3_8h', '0.199', 299),
    ('o3_8h', '0.200', 300),
    ('o3_8h', '0.2005', 300),
    ('o3_8h', '0.201', 'deferred'),
    ('o3_1h', '0.125', 101),
    ('o3_1h', '0.1255', 101),
    ('o3_1h', '0.163', 149),
    ('o3_1h', '0.164', 150),
    ('o3_1h', '0.1645', 150),
    ('o3_1h', '0.165', 151),
    ('o3_1h', '0.1655', 151),
    ('o3_1h', '0.203', 199),
    ('o3_1h', '0.204', 200),
    ('o3_1h', '0.2045', 200),
    ('o3_1h', '0.205', 201),
    ('o3_1h', '0.2055', 201),
    ('o3_1h', '0.403', 300),
    ('o3_1h', '0.404', 300),
    ('o3_1h', '0.4045', 300),
    ('o3_1h', '0.405', 301),
    ('o3_1h', '0.4055', 301),
    ('o3_1h', '0.603', 499),
    ('o3_1h', '0.604', 500),
    ('o3_1h', '0.6045', 500),
    ('o3_1h', '0.605', 'beyond'),
    ('o3_1h', '0.124', 'below'),
    ('o3_1h', '0.1245', 'below'),
    ('co_8h', '0.0', 0),
    ('co_8h', '0.05', 0),
    ('co_8h', '4.3', 49),
    ('co_8h', '4.4', 50),
    ('co_8h', '4.45', 50),
    ('co_8h', '4.5', 51),
    ('co_8h', '4.55', 51),
    ('co_8h', '9.3', 99),
    ('co_8h', '9.4', 100),
    ('co_8h', '9.45', 100),
    ('co_8h', '9.5', 101),
    ('co_8h', '9.55', 101),
    ('co_8h', '12.3', 148),
    ('co_8h', '12.4', 150),
    ('co_8h', '12.45', 150),
    ('co_8h', '12.5', 151),
    ('co_8h', '12.55', 151),
    ('co_8h', '15.3', 198),
    ('co_8h', '15.4', 200),
    ('co_8h', '15.45', 200),
    ('co_8h', '15.5', 201),
    ('co_8h', '15.55', 201),
    ('co_8h', '30.3', 299),
    ('co_8h', '30.4', 300),
    ('co_8h', '30.45', 300),
    ('co_8h', '30.5', 301),
    ('co_8h', '30.55', 301),
    ('co_8h', '50.3', 499),
    ('co_8h', '50.4', 500),
    ('co_8h', '50.45', 500),
    ('co_8h', '50.5', 'beyond'),
    ('so2_1h', '0', 0),
    ('so2_1h', '0.5', 0),
    ('so2_1h', '34', 49),
    ('so2_1h', '35', 50),
    ('so2_1h', '35.5', 50),
    ('so2_1h', '36', 51),
    ('so2_1h', '36.5', 51),
    ('so2_1h', '74', 99),
    ('so2_1h', '75', 100),
    ('so2_1h', '75.5', 100),
    ('so2_1h', '76', 101),
    ('so2_1h', '76.5', 101),
    ('so2_1h', '184', 150),
    ('so2_1h', '185', 150),
    ('so2_1h', '185.5', 150),
    ('so2_1h', '186', 151),
    ('so2_1h', '186.5', 151),
    ('so2_1h', '303', 200),
    ('so2_1h', '304', 200),
    ('so2_1h', '304.5', 200),
    ('so2_1h', '305', 'deferred'),
    ('so2_24h', '305', 201),
    ('so2_24h', '305.5', 201),
    ('so2_24h', '603', 300),
    ('so2_24h', '604', 300),
    ('so2_24h', '604.5', 300),
    ('so2_24h', '605', 301),
    ('so2_24h', '605.5', 301),
    ('so2_24h', '1003', 500),
    ('so2_24h', '1004', 500),
    ('so2_24h', '1004.5', 500),
    ('so2_24h', '1005', 'beyond'),
    ('so2_24h', '304', 'below'),
    ('so2_24h', '304.5', 'below'),
    ('no2_1h', '0', 0),
    ('no2_1h', '0.5', 0),
    ('no2_1h', '52', 49),
    ('no2_1h', '53', 50),
    ('no2_1h', '53.5', 50),
    ('no2_1h', '54', 51),
    ('no2_1h', '54.5', 51),
    ('no2_1h', '99', 99),
    ('no2_1h', '100', 100),
    ('no2_1h', '100.5', 100),
    ('no2_1h', '101', 101),
    ('no2_1h', '101.5', 101),
    ('no2_1h', '359', 150),
    ('no2_1h', '360', 150),
    ('no2_1h', '360.5', 150),
    ('no2_1h', '361', 151),
    ('no2_1h', '361.5', 151),
    ('no2_1h', '648', 200),
    ('no2_1h', '649', 200),
    ('no2_1h', '649.5', 200),
    ('no2_1h', '650', 201),
    ('no2_1h', '650.5', 201),
    ('no2_1h', '1248', 300),
    ('no2_1h', '1249', 300),
    ('no2_1h', '1249.5', 300),
    ('no2_1h', '1250', 301),
    ('no2_1h', '1250.5', 301),
    ('no2_1h', '2048', 500),
    ('no2_1h', '2049', 500),
    ('no2_1h', '2049.5', 500),
    ('no2_1h', '2050', 'beyond'),
]
EPA_2018_VECTORS: list[tuple[str, str, int | str]] = [
    ('pm25_24h', '0.0', 0),
    ('pm25_24h', '0.05', 0),
    ('pm25_24h', '11.9', 50),
    ('pm25_24h', '12.0', 50),
    ('pm25_24h', '12.05', 50),
    ('pm25_24h', '12.1', 51),
    ('pm25_24h', '12.15', 51),
    ('pm25_24h', '35.3', 100),
    ('pm25_24h', '35.4', 100),
    ('pm25_24h', '35.45', 100),
    ('pm25_24h', '35.5', 101),
    ('pm25_24h', '35.55', 101),
    ('pm25_24h', '55.3', 150),
    ('pm25_24h', '55.4', 150),
    ('pm25_24h', '55.45', 150),
    ('pm25_24h', '55.5', 151),
    ('pm25_24h', '55.55', 151),
    ('pm25_24h', '150.3', 200),
    ('pm25_24h', '150.4', 200),
    ('pm25_24h', '150.45', 200),
    ('pm25_24h', '150.5', 201),
    ('pm25_24h', '150.55', 201),
    ('pm25_24h', '250.3', 300),
    ('pm25_24h', '250.4', 300),
    ('pm25_24h', '250.45', 300),
    ('pm25_24h', '250.5', 301),
    ('pm25_24h', '250.55', 301),
    ('pm25_24h', '350.3', 400),
    ('pm25_24h', '350.4', 400),
    ('pm25_24h', '350.45', 400),
    ('pm25_24h', '350.5', 401),
    ('pm25_24h', '350.55', 401),
    ('pm25_24h', '500.3', 500),
    ('pm25_24h', '500.4', 500),
    ('pm25_24h', '500.45', 500),
    ('pm25_24h', '500.5', 'beyond'),
    ('pm10_24h', '0', 0),
    ('pm10_24h', '0.5', 0),
    ('pm10_24h', '53', 49),
    ('pm10_24h', '54', 50),
    ('pm10_24h', '54.5', 50),
    ('pm10_24h', '55', 51),
    ('pm10_24h', '55.5', 51),
    ('pm10_24h', '153', 100),
    ('pm10_24h', '154', 100),
    ('pm10_24h', '154.5', 100),
    ('pm10_24h', '155', 101),
    ('pm10_24h', '155.5', 101),
    ('pm10_24h', '253', 150),
    ('pm10_24h', '254', 150),
    ('pm10_24h', '254.5', 150),
    ('pm10_24h', '255', 151),
    ('pm10_24h', '255.5', 151),
    ('pm10_24h', '353', 200),
    ('pm10_24h', '354', 200),
    ('pm10_24h', '354.5', 200),
    ('pm10_24h', '355', 201),
    ('pm10_24h', '355.5', 201),
    ('pm10_24h', '423', 299),
    ('pm10_24h', '424', 300),
    ('pm10_24h', '424.5', 300),
    ('pm10_24h', '425', 301),
    ('pm10_24h', '425.5', 301),
    ('pm10_24h', '503', 399),
    ('pm10_24h', '504', 400),
    ('pm10_24h', '504.5', 400),
    ('pm10_24h', '505', 401),
    ('pm10_24h', '505.5', 401),
    ('pm10_24h', '603', 499),
    ('pm10_24h', '604', 500),
    ('pm10_24h', '604.5', 500),
    ('pm10_24h', '605', 'beyond'),
    ('o3_8h', '0.000', 0),
    ('o3_8h', '0.0005', 0),
    ('o3_8h', '0.053', 49),
    ('o3_8h', '0.054', 50),
    ('o3_8h', '0.0545', 50),
    ('o3_8h', '0.055', 51),
    ('o3_8h', '0.0555', 51),
    ('o3_8h', '0.069', 97),
    ('o3_8h', '0.070', 100),
    ('o3_8h', '0.0705', 100),
    ('o3_8h', '0.071', 101),
    ('o3_8h', '0.0715', 101),
    ('o3_8h', '0.084', 147),
    ('o3_8h', '0.085', 150),
    ('o3_8h', '0.0855', 150),
    ('o3_8h', '0.086', 151),
    ('o3_8h', '0.0865', 151),
    ('o3_8h', '0.104', 197),
    ('o3_8h', '0.105', 200),
    ('o3_8h', '0.1055', 200),
    ('o3_8h', '0.106', 201),
    ('o3_8h', '0.1065', 201),
    ('o3_8h', '0.199', 299),
    ('o3_8h', '0.200', 300),
    ('o3_8h', '0.2005', 300),
    ('o3_8h', '0.201', 'deferred'),
    ('o3_1h', '0.125', 101),
    ('o3_1h', '0.1255', 101),
    ('o3_1h', '0.163', 149),
    ('o3_1h', '0.164', 150),
    ('o3_1h', '0.1645', 150),
    ('o3_1h', '0.165', 151),
    ('o3_1h', '0.1655', 151),
    ('o3_1h', '0.203', 199),
    ('o3_1h', '0.204', 200),
    ('o3_1h', '0.2045', 200),
    ('o3_1h', '0.205', 201),
    ('o3_1h', '0.2055', 201),
    ('o3_1h', '0.403', 300),
    ('o3_1h', '0.404', 300),
    ('o3_1h', '0.4045', 300),
    ('o3_1h', '0.405', 301),
    ('o3_1h', '0.4055', 301),
    ('o3_1h', '0.503', 399),
    ('o3_1h', '0.504', 400),
    ('o3_1h', '0.5045', 400),
    ('o3_1h', '0.505', 401),
    ('o3_1h', '0.5055', 401),
    ('o3_1h', '0.603', 499),
    ('o3_1h', '0.604', 500),
    ('o3_1h', '0.6045', 500),
    ('o3_1h', '0.605', 'beyond'),
    ('o3_1h', '0.124', 'below'),
    ('o3_1h', '0.1245', 'below'),
    ('co_8h', '0.0', 0),
    ('co_8h', '0.05', 0),
    ('co_8h', '4.3', 49),
    ('co_8h', '4.4', 50),
    ('co_8h', '4.45', 50),
    ('co_8h', '4.5', 51),
    ('co_8h', '4.55', 51),
    ('co_8h', '9.3', 99),
    ('co_8h', '9.4', 100),
    ('co_8h', '9.45', 100),
    ('co_8h', '9.5', 101),
    ('co_8h', '9.55', 101),
    ('co_8h', '12.3', 148),
    ('co_8h', '12.4', 150),
    ('co_8h', '12.45', 150),
    ('co_8h', '12.5', 151),
    ('co_8h', '12.55', 151),
    ('co_8h', '15.3', 198),
    ('co_8h', '15.4', 200),
    ('co_8h', '15.45', 200),
    ('co_8h', '15.5', 201),
    ('co_8h', '15.55', 201),
    ('co_8h', '30.3', 299),
    ('co_8h', '30.4', 300),
    ('co_8h', '30.45', 300),
    ('co_8h', '30.5', 301),
    ('co_8h', '30.55', 301),
    ('co_8h', '40.3', 399),
    ('co_8h', '40.4', 400),
    ('co_8h', '40.45', 400),
    ('co_8h', '40.5', 401),
    ('co_8h', '40.55', 401),
    ('co_8h', '50.3', 499),
    ('co_8h', '50.4', 500),
    ('co_8h', '50.45', 500),
    ('co_8h', '50.5', 'beyond'),
    ('so2_1h', '0', 0),
    ('so2_1h', '0.5', 0),
    ('so2_1h', '34', 49),
    ('so2_1h', '35', 50),
    ('so2_1h', '35.5', 50),
    ('so2_1h', '36', 51),
    ('so2_1h', '36.5', 51),
    ('so2_1h', '74', 99),
    ('so2_1h', '75', 100),
    ('so2_1h', '75.5', 100),
    ('so2_1h', '76', 101),
    ('so2_1h', '76.5', 101),
    ('so2_1h', '184', 150),
    ('so2_1h', '185', 150),
    ('so2_1h', '185.5', 150),
    ('so2_1h', '186', 151),
    ('so2_1h', '186.5', 151),
    ('so2_1h', '303', 200),
    ('so2_1h', '304', 200),
    ('so2_1h', '304.5', 200),
    ('so2_1h', '305', 'deferred'),
    ('so2_24h', '305', 201),
    ('so2_24h', '305.5', 201),
    ('so2_24h', '603', 300),
    ('so2_24h', '604', 300),
    ('so2_24h', '604.5', 300),
    ('so2_24h', '605', 301),
    ('so2_24h', '605.5', 301),
    ('so2_24h', '803', 400),
    ('so2_24h', '804', 400),
    ('so2_24h', '804.5', 400),
    ('so2_24h', '805', 401),
    ('so2_24h', '805.5', 401),
    ('so2_24h', '1003', 500),
    ('so2_24h', '1004', 500),
    ('so2_24h', '1004.5', 500),
    ('so2_24h', '1005', 'beyond'),
    ('so2_24h', '304', 'below'),
    ('so2_24h', '304.5', 'below'),
    ('no2_1h', '0', 0),
    ('no2_1h', '0.5', 0),
    ('no2_1h', '52', 49),
    ('no2_1h', '53', 50),
    ('no2_1h', '53.5', 50),
    ('no2_1h', '54', 51),
    ('no2_1h', '54.5', 51),
    ('no2_1h', '99', 99),
    ('no2_1h', '100', 100),
    ('no2_1h', '100.5', 100),
    ('no2_1h', '101', 101),
    ('no2_1h', '101.5', 101),
    ('no2_1h', '359', 150),
    ('no2_1h', '360', 150),
    ('no2_1h', '360.5', 150),
    ('no2_1h', '361', 151),
    ('no2_1h', '361.5', 151),
    ('no2_1h', '648', 200),
    ('no2_1h', '649', 200),
    ('no2_1h', '649.5', 200),
    ('no2_1h', '650', 201),
    ('no2_1h', '650.5', 201),
    ('no2_1h', '1248', 300),
    ('no2_1h', '1249', 300),
    ('no2_1h', '1249.5', 300),
    ('no2_1h', '1250', 301),
    ('no2_1h', '1250.5', 301),
    ('no2_1h', '1648', 400),
    ('no2_1h', '1649', 400),
    ('no2_1h', '1649.5', 400),
    ('no2_1h', '1650', 401),
    ('no2_1h', '1650.5', 401),
    ('no2_1h', '2048', 500),
    ('no2_1h', '2049', 500),
    ('no2_1h', '2049.5', 500),
    ('no2_1h', '2050', 'beyond'),
]


def _check(edition, item: str, conc: str, expected: int | str) -> None:
    s = sub_index(edition, item, conc)
    if expected == "beyond":
        assert (s.value, s.status, s.beyond) == (500, "beyond_table", True)
    elif expected == "deferred":
        assert (s.value, s.status) == (None, "deferred")
    elif expected == "below":
        assert (s.value, s.status) == (None, "below_table")
    else:
        assert (s.value, s.status) == (expected, "table"), s
    assert sub_index(edition, item, float(conc)).value == s.value


@pytest.mark.parametrize(("item", "conc", "expected"), EPA_2024_VECTORS)
def test_epa_2024_breakpoint_vectors(item: str, conc: str, expected: int | str) -> None:
    assert E2024.standard_id == "EPA AQI 2024"
    _check(E2024, item, conc, expected)


@pytest.mark.parametrize(("item", "conc", "expected"), EPA_2018_VECTORS)
def test_epa_2018_breakpoint_vectors(item: str, conc: str, expected: int | str) -> None:
    assert E2018.standard_id == "EPA AQI 2018"
    _check(E2018, item, conc, expected)


@pytest.mark.parametrize(("item", "given", "used"), [
    ("pm25_24h", "35.49", "35.4"), ("pm25_24h", 35.4, "35.4"), ("pm10_24h", "154.9", "154"),
    ("o3_8h", "0.0709", "0.070"), ("co_8h", "9.49", "9.4"), ("so2_1h", "75.9", "75"), ("no2_1h", "100.99", "100"),
])
def test_truncation_not_rounding(item: str, given: str | float, used: str) -> None:
    s = sub_index(E2024, item, given)
    assert s.used == Decimal(used)
    assert s.value == sub_index(E2024, item, used).value


def test_rounding_is_half_up() -> None:
    # CO 1.1 ppm: 50/4.4*1.1 = 12.5 exactly; nearest integer rounding half up gives 13 (half-even would give 12).
    s = sub_index(E2024, "co_8h", "1.1")
    assert s.exact is not None and s.exact == Decimal("12.5")
    assert s.value == 13


def test_edition_by_date_pm25() -> None:
    assert epa_aqi({"pm25": "12.05"}, date(2024, 5, 5)).aqi == 50  # 2018: truncated 12.0 -> 50
    assert epa_aqi({"pm25": "12.05"}, date(2024, 5, 6)).aqi == 56  # 2024: 51 + 49/26.3*2.9 = 56.40 -> 56
    assert epa_aqi({"pm25": "150.4"}, date(2024, 5, 5)).aqi == 200
    assert epa_aqi({"pm25": "150.4"}, date(2024, 5, 6)).aqi == 226  # 201 + 99/99.9*24.9 = 225.68 -> 226


def test_o3_8h_above_0200_uses_the_1h_value() -> None:
    r = epa_aqi({"o3_8h": "0.201", "o3_1h": "0.405"}, ON)
    by_item = {s.item: s for s in r.sub_indices}
    assert by_item["o3_8h"].status == "substituted" and by_item["o3_8h"].value == 301
    assert (r.aqi, r.primary_pollutants) == (301, ("o3_8h",))
    with pytest.raises(InsufficientData, match="o3_8h=0.201 ppm is above 0.2.*o3_1h"):
        epa_aqi({"o3_8h": "0.201"}, ON)


def test_o3_both_periods_report_the_higher() -> None:
    r = epa_aqi({"o3_8h": "0.080", "o3_1h": "0.170"}, ON)
    # 8-h: 101 + 49/0.014*0.009 = 132.5 -> 133 ; 1-h: 151 + 49/0.039*0.005 = 157.28 -> 157
    assert {s.item: s.value for s in r.sub_indices} == {"o3_8h": 133, "o3_1h": 157}
    assert (r.aqi, r.primary_pollutants) == (157, ("o3_1h",))


def test_o3_1h_below_0125_defines_no_index() -> None:
    r = epa_aqi({"o3_8h": "0.060", "o3_1h": "0.100"}, ON)
    by_item = {s.item: s for s in r.sub_indices}
    assert (by_item["o3_1h"].value, by_item["o3_1h"].status, by_item["o3_1h"].counted) == (None, "below_table", False)
    assert r.aqi == 67  # 51 + 49/0.015*0.005 = 67.33 -> 67
    with pytest.raises(InsufficientData):
        epa_aqi({"o3_1h": "0.100"}, ON)


def test_so2_above_304_uses_the_24h_value() -> None:
    r = epa_aqi({"so2_1h": 400, "so2_24h": 305}, ON)
    assert (r.aqi, r.primary_pollutants) == (201, ("so2_1h",))
    r = epa_aqi({"so2_1h": 400, "so2_24h": 200}, ON)  # 24-h below the table: AQI 200 (unverified rule)
    by_item = {s.item: s for s in r.sub_indices}
    assert (r.aqi, by_item["so2_1h"].verified, r.verified) == (200, False, False)
    assert epa_aqi({"so2_1h": 304}, ON).aqi == 200
    with pytest.raises(InsufficientData, match="so2_24h"):
        epa_aqi({"so2_1h": 305}, ON)


def test_beyond_the_aqi() -> None:
    r = epa_aqi({"pm25": "325.5", "pm10": 100}, ON)
    assert (r.aqi, r.beyond_table, r.category.name) == (500, True, "Hazardous")
    assert not epa_aqi({"pm25": "325.4"}, ON).beyond_table
    r = epa_aqi({"o3_8h": "0.3", "o3_1h": "0.7"}, ON)  # beyond through the 1-h substitute
    assert (r.aqi, r.beyond_table) == (500, True)


def test_the_main_pollutant_is_always_named() -> None:
    r = epa_aqi({"pm25": 3, "no2": 10}, ON)
    assert (r.aqi, r.primary_pollutants) == (17, ("pm25_24h",))  # 50/9*3 = 16.67 -> 17
    assert r.exceeding_pollutants == ()


@pytest.mark.parametrize(("index", "name", "colour"), [
    (0, "Good", "#00E400"), (50, "Good", "#00E400"), (51, "Moderate", "#FFFF00"), (100, "Moderate", "#FFFF00"),
    (101, "Unhealthy for Sensitive Groups", "#FF7E00"), (150, "Unhealthy for Sensitive Groups", "#FF7E00"),
    (151, "Unhealthy", "#FF0000"), (200, "Unhealthy", "#FF0000"), (201, "Very Unhealthy", "#8F3F97"),
    (300, "Very Unhealthy", "#8F3F97"), (301, "Hazardous", "#7E0023"), (500, "Hazardous", "#7E0023"),
])
def test_categories(index: int, name: str, colour: str) -> None:
    for e in (E2018, E2024):
        assert (e.category(index).name, e.category(index).colour) == (name, colour)


def test_result_carries_standard_and_inputs() -> None:
    r = epa_aqi({"pm25": "35.55", "o3": "0.071", "co": "1.1"}, ON)
    assert (r.standard_id, r.edition, r.report, r.aqi) == ("EPA AQI 2024", "2024", "daily", 101)
    assert set(r.primary_pollutants) == {"pm25_24h", "o3_8h"}
    d = r.to_dict()
    pm = d["sub_indices"][0]
    assert (pm["concentration"], pm["used_concentration"], pm["sub_index"]) == (35.55, 35.5, 101)
    assert pm["bracket"] == {"c_lo": 35.5, "c_hi": 55.4, "i_lo": 101, "i_hi": 150}
    with pytest.raises(UnknownItem):
        compute_aqi(E2024, {"pm25": 3}, "realtime")


def test_unit_conversion_25c_1atm() -> None:
    assert ppb_to_ugm3("so2", Decimal(1)) == Decimal("64.07") / Decimal("24.45")
    assert ugm3_to_ppb("no2", Decimal("46.01")) == Decimal("24.45")
    assert convert("co", Decimal("28.01"), "mg/m3", "ppm") == Decimal("24.45")
    assert convert("o3", Decimal("0.070"), "ppm", "ug/m3") == Decimal("0.070") * 1000 * Decimal("48.00") / Decimal("24.45")
    assert convert("pm25", Decimal("1"), "mg/m3", "ug/m3") == Decimal(1000)
    for bad in (("pm25", "ug/m3", "ppb"), ("no2", "ug/m3", "furlongs")):
        with pytest.raises(ValueError):
            convert(bad[0], Decimal(1), bad[1], bad[2])
    # pipeline units (ug/m3, CO mg/m3) -> table units
    got = from_pipeline_units(E2024, {"no2": "188.02", "co": "1.145", "pm25": 12})
    assert got["no2_1h"] == Decimal("188.02") * Decimal("24.45") / Decimal("46.01")
    assert got["co_8h"] == Decimal("1.145") * 1000 * Decimal("24.45") / Decimal("28.01") / 1000
    assert got["pm25_24h"] == Decimal(12)


def test_vectorised_equals_scalar_everywhere() -> None:
    rng = np.random.default_rng(5062024)
    for e in (E2018, E2024):
        for item, table in e.tables.items():
            top = float(table.c_max)
            step = 10.0 ** -(table.truncate or 0)
            values = list(rng.uniform(0, top * 1.2, 3000))
            values += list(np.round(rng.uniform(0, top * 1.2, 3000) / step) * step)
            for bp in table.breakpoints():
                b = float(bp)
                values += [b, np.nextafter(b, np.inf), b + step / 2, b + step, max(b - step, 0.0)]
                if b > 0:
                    values.append(np.nextafter(b, -1.0))
            arr = np.array(values)
            got = sub_index_array(e, item, arr)
            want = np.array([np.nan if (v := sub_index(e, item, float(x)).value) is None else v for x in arr])
            assert np.array_equal(got, want, equal_nan=True), item


def test_cli_epa() -> None:
    out = CliRunner().invoke(aqi_command, ["--standard", "epa", "--date", "2026-11-22", "pm25=325.5"])
    assert out.exit_code == 0, out.output
    assert "EPA AQI 2024 (edition 2024" in out.output
    assert "AQI 500 - beyond the AQI" in out.output and "Hazardous" in out.output
    out = CliRunner().invoke(aqi_command, ["--standard", "epa", "--date", "2020-01-01", "--json", "pm25=35.45"])
    data = json.loads(out.output)
    assert (data["standard_id"], data["aqi"], data["sub_indices"][0]["used_concentration"]) == ("EPA AQI 2018", 100, 35.4)
    out = CliRunner().invoke(aqi_command, ["--standard", "epa", "--units", "pipeline", "--date", "2026-11-22", "no2=188.02"])
    # 188.02 ug/m3 * 24.45 / 46.01 = 99.91 ppb -> truncated 99 -> 51 + 49/46*45 = 98.93 -> 99
    assert out.exit_code == 0 and "no2_1h" in out.output and "AQI 99:" in out.output
    out = CliRunner().invoke(aqi_command, ["--standard", "epa", "--report", "realtime", "pm25=3"])
    assert out.exit_code != 0 and "no realtime report" in out.output
