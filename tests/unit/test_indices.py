"""Station indices from rolling one-hour means (pure)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from jobs.indices import INDEX_PARAMETERS, index_of_station_hour, station_index
from schemas.models import validation_errors
from schemas.network import Network, Station

AIR = Station("n-a01", "north", "air", 49.4, 17.4, "Europe/Prague", ("pm25", "pm10", "so2", "no2", "co", "o3", "temp"))
WATER = Station("c-w01", "central", "water", 49.3, 17.4, "Europe/Prague", ("ph", "do", "codmn", "nh3n", "tp"), river_km=24.0)


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def agg(station: Station, parameter: str, mean: float, minutes: int = 60) -> tuple[float, int]:
    return (mean, minutes)


def air_means(pm25: float, minutes: int = 60) -> dict[str, tuple[float, int]]:
    low = {"pm10": 40.0, "so2": 10.0, "no2": 30.0, "co": 0.5, "o3": 50.0, "temp": 5.0}
    return {"pm25": agg(AIR, "pm25", pm25, minutes)} | {p: agg(AIR, p, v) for p, v in low.items()}


END = ms(2026, 11, 22, 10, 0)


def test_realtime_aqi_uses_the_edition_in_force_and_names_the_primary_pollutant() -> None:
    idx = station_index(AIR, END - 3_600_000, END, air_means(80.0))
    # HJ 633-2026: PM2.5 80 in the 60..115 bracket: 100 + 20 * 50 / 55 = 118.18 -> rounded up to 119.
    assert (idx["value"], idx["label"], idx["primary"], idx["standard_id"]) == (119, "Lightly polluted", ["pm25_1h"], "HJ 633-2026")
    assert not idx["insufficient_data"] and idx["reason"] is None
    assert {i["parameter"] for i in idx["inputs"]} == {"pm25", "pm10", "so2", "no2", "co", "o3"}  # temp is no AQI item
    assert validation_errors("index", idx) == []
    json.dumps(idx)  # the detail must be plain JSON


def test_the_hour_before_the_2026_edition_uses_hj633_2012() -> None:
    end = ms(2026, 3, 1, 0, 0)  # the hour 23:00-24:00 on 2026-02-28
    idx = station_index(AIR, end - 3_600_000, end, air_means(80.0))
    # HJ 633-2012: PM2.5 80 in the 75..115 bracket: 100 + 5 * 50 / 40 = 106.25 -> 107.
    assert (idx["value"], idx["standard_id"]) == (107, "HJ 633-2012")


def test_incomplete_hours_do_not_count_and_none_left_means_insufficient_data() -> None:
    idx = station_index(AIR, END - 3_600_000, END, air_means(300.0, minutes=44))
    pm25 = next(i for i in idx["inputs"] if i["parameter"] == "pm25")
    assert pm25["valid"] is False and idx["value"] is not None and idx["value"] < 100  # PM2.5 left out
    nothing = station_index(AIR, END - 3_600_000, END, {p: agg(AIR, p, 10.0, minutes=30) for p in ("pm25", "o3")})
    assert nothing["value"] is None and nothing["insufficient_data"] and "45 minutes" in nothing["reason"]
    assert validation_errors("index", nothing) == []


def test_water_class_is_set_by_the_worst_parameter() -> None:
    means = {p: agg(WATER, p, v) for p, v in {"ph": 7.5, "do": 6.5, "codmn": 3.0, "nh3n": 1.2, "tp": 0.15}.items()}
    idx = station_index(WATER, END - 3_600_000, END, means)
    assert (idx["value"], idx["label"], idx["primary"], idx["standard_id"]) == (4, "IV", ["nh3n"], "GB 3838-2002")
    assert validation_errors("index", idx) == []


def test_index_ids_are_deterministic_per_station_window_and_edition() -> None:
    a = station_index(AIR, END - 3_600_000, END, air_means(80.0))
    assert a == station_index(AIR, END - 3_600_000, END, air_means(80.0))
    assert a["index_id"] != station_index(AIR, END - 3_540_000, END + 60_000, air_means(80.0))["index_id"]


def test_a_station_hour_record_maps_to_the_same_index() -> None:
    record = {"schema": "jw.station_hour.v1", "station_id": AIR.id, "region": AIR.region, "medium": "air", "window_start": END - 3_600_000, "window_end": END}
    for p in INDEX_PARAMETERS:
        record[f"{p}_mean"], record[f"{p}_minutes"] = None, 0
    for p, (mean, minutes) in air_means(80.0).items():
        if p in INDEX_PARAMETERS:
            record[f"{p}_mean"], record[f"{p}_minutes"] = mean, minutes
    assert validation_errors("station_hour", record) == []
    net = Network({}, {AIR.id: AIR})
    assert index_of_station_hour(record, net) == station_index(AIR, END - 3_600_000, END, air_means(80.0))
