"""Station indices from rolling hours, clock hours and the long windows (pure), by hand-worked values."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest

from alerts.standards import registry
from jobs.indices import (
    daily_aqi,
    hourly_index,
    index_of_station_hour,
    indices_of_station_clock_hour,
    is_local_midnight,
    local_day,
    station_index,
    wind_of,
)
from jobs.sql import clock_hour_columns
from jobs.validity import (
    INDEX_PARAMETERS,
    MIN_DAY_HOURS,
    MIN_MINUTES,
    MIN_O3_8H_HOURS,
    MIN_O3_8H_MEANS,
    O3_8H_MAX_WINDOW_H,
)
from schemas.models import validation_errors
from schemas.network import Network, Region, Station

AIR = Station("n-a01", "north", "air", 49.4, 17.4, "Europe/Prague", ("pm25", "pm10", "so2", "no2", "co", "o3", "temp", "wind_dir", "wind_speed"))
WATER = Station("c-w01", "central", "water", 49.3, 17.4, "Europe/Prague", ("ph", "do", "codmn", "nh3n", "tp"), river_km=24.0)
NET = Network({"north": Region("north", "North", "Europe/Prague"), "central": Region("central", "Central", "Europe/Prague")}, {AIR.id: AIR, WATER.id: WATER})
HOUR = 3_600_000


def ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def air_means(pm25: float, minutes: int = 60) -> dict[str, tuple[float, int]]:
    low = {"pm10": 40.0, "so2": 10.0, "no2": 30.0, "co": 0.5, "o3": 50.0}
    return {"pm25": (pm25, minutes)} | {p: (v, 60) for p, v in low.items()}


def valid(idx: dict[str, Any]) -> None:
    assert validation_errors("index", idx) == [], validation_errors("index", idx)
    json.dumps(idx, allow_nan=False)  # plain JSON, no NaN


END = ms(2026, 11, 22, 10, 0)


# --- real-time (rolling hour) ---------------------------------------------------------------


def test_realtime_aqi_uses_the_edition_in_force_and_names_the_primary_pollutant() -> None:
    idx = station_index(AIR, END - HOUR, END, air_means(80.0))
    # HJ 633-2026: PM2.5 80 in the 60..115 bracket: 100 + 20 * 50 / 55 = 118.18 -> rounded up to 119.
    assert (idx["index"], idx["value"], idx["label"], idx["primary"], idx["standard_id"]) == ("aqi_realtime", 119, "Lightly polluted", ["pm25_1h"], "HJ 633-2026")
    assert not idx["insufficient_data"] and idx["reason"] is None and idx["wind"] is None
    pm25 = next(i for i in idx["inputs"] if i["parameter"] == "pm25")
    assert pm25 == {"parameter": "pm25", "averaging": "1h", "mean": 80.0, "count": 60, "count_unit": "minutes", "completeness": 1.0, "valid": True}
    assert {i["parameter"] for i in idx["inputs"]} == {"pm25", "pm10", "so2", "no2", "co", "o3"}
    valid(idx)


def test_the_hour_before_the_2026_edition_uses_hj633_2012() -> None:
    end = ms(2026, 3, 1, 0, 0)  # the hour 23:00-24:00 UTC on 2026-02-28
    idx = station_index(AIR, end - HOUR, end, air_means(80.0))
    # HJ 633-2012: PM2.5 80 in the 75..115 bracket: 100 + 5 * 50 / 40 = 106.25 -> 107.
    assert (idx["value"], idx["standard_id"]) == (107, "HJ 633-2012")


def test_incomplete_hours_do_not_count_and_none_left_means_insufficient_data() -> None:
    idx = station_index(AIR, END - HOUR, END, air_means(300.0, minutes=MIN_MINUTES - 1))
    pm25 = next(i for i in idx["inputs"] if i["parameter"] == "pm25")
    assert pm25["valid"] is False and pm25["completeness"] == pytest.approx(44 / 60)
    assert idx["value"] is not None and idx["value"] < 100  # PM2.5 300 left out
    at_rule = station_index(AIR, END - HOUR, END, air_means(300.0, minutes=MIN_MINUTES))
    assert at_rule["value"] is not None and at_rule["value"] > 300  # 45 minutes is enough
    nothing = station_index(AIR, END - HOUR, END, {p: (10.0, 30) for p in ("pm25", "o3")})
    assert nothing["value"] is None and nothing["label"] is None and nothing["insufficient_data"]
    assert "45 minutes" in nothing["reason"] and nothing["standard_id"] == "HJ 633-2026"  # the edition even without a value
    valid(nothing)


@pytest.mark.parametrize("noisy", [218.0, math.nextafter(218.0, 0), math.nextafter(218.0, 300), 217.99999999999997, 218.00000000000003])
def test_float_noise_of_running_sums_does_not_move_the_rounded_up_index(noisy: float) -> None:
    # HJ 633-2026 PM2.5 1-h 218 in 150..250 -> 200 + 68 * 100 / 100 = 268 exactly; ceil must not make 218 + 1 ulp a 269.
    idx = station_index(AIR, END - HOUR, END, {"pm25": (noisy, 60)})
    assert idx["value"] == 268 and idx["inputs"][0]["mean"] == 218.0
    assert station_index(AIR, END - HOUR, END, {"pm25": (218.001, 60)})["value"] == 269  # a real difference still counts


def test_water_class_is_set_by_the_worst_parameter() -> None:
    means = {p: (v, 60) for p, v in {"ph": 7.5, "do": 6.5, "codmn": 3.0, "nh3n": 1.2, "tp": 0.15}.items()}
    idx = station_index(WATER, END - HOUR, END, means)
    assert (idx["index"], idx["value"], idx["label"], idx["primary"], idx["standard_id"]) == ("water_class_realtime", 4, "IV", ["nh3n"], "GB 3838-2002")
    valid(idx)
    clock = hourly_index(WATER, END - HOUR, END, means)
    assert (clock["index"], clock["value"]) == ("water_class", 4)
    nothing = hourly_index(WATER, END - HOUR, END, {"nh3n": (1.2, 10)})
    assert nothing["insufficient_data"] and nothing["standard_id"] == "GB 3838-2002"
    valid(nothing)


def test_index_ids_are_deterministic_per_station_kind_window_and_edition() -> None:
    a = station_index(AIR, END - HOUR, END, air_means(80.0))
    assert a == station_index(AIR, END - HOUR, END, air_means(80.0))
    assert a["index_id"] != station_index(AIR, END - HOUR + 60_000, END + 60_000, air_means(80.0))["index_id"]
    assert a["index_id"] != hourly_index(AIR, END - HOUR, END, air_means(80.0))["index_id"]  # same window, other kind


# --- wind ------------------------------------------------------------------------------------


def unit_vector_mean(degrees: list[float]) -> tuple[float, float]:
    return (sum(math.sin(math.radians(d)) for d in degrees) / len(degrees), sum(math.cos(math.radians(d)) for d in degrees) / len(degrees))


def circular_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def test_wind_from_350_and_10_degrees_is_north_not_south() -> None:
    s, c = unit_vector_mean([350.0, 10.0] * 30)
    wind = wind_of(s, c, 60, 3.5)
    assert wind is not None
    assert circular_gap(wind["from_deg"], 0.0) < 1e-9 and 0.0 <= wind["from_deg"] < 360.0  # the arithmetic mean would say 180
    assert wind["steadiness"] == pytest.approx(math.cos(math.radians(10.0)))
    assert (wind["speed_ms"], wind["minutes"]) == (3.5, 60)


@pytest.mark.parametrize(("degrees", "expected"), [([90.0], 90.0), ([180.0, 270.0], 225.0), ([340.0, 350.0], 345.0), ([359.0, 1.0, 3.0], 1.0)])
def test_wind_direction_is_the_angle_of_the_mean_vector(degrees: list[float], expected: float) -> None:
    wind = wind_of(*unit_vector_mean(degrees), minutes=len(degrees), speed_mean=None)
    assert wind is not None and circular_gap(wind["from_deg"], expected) < 1e-9 and wind["speed_ms"] is None
    assert 0.0 <= wind["from_deg"] < 360.0 and 0.0 < wind["steadiness"] <= 1.0


def test_no_wind_data_or_cancelling_directions_give_no_wind() -> None:
    assert wind_of(None, None, 0, 2.0) is None
    assert wind_of(*unit_vector_mean([90.0, 270.0]), minutes=2, speed_mean=2.0) is None  # no prevailing direction
    assert wind_of(1.0, 0.0, 0, None) is None


def station_hour_record(means: dict[str, tuple[float, int]], wind: tuple[float | None, float | None, int, float | None, int]) -> dict[str, Any]:
    record: dict[str, Any] = {"schema": "jw.station_hour.v2", "station_id": AIR.id, "region": AIR.region, "medium": "air", "window_start": END - HOUR, "window_end": END}
    for p in INDEX_PARAMETERS:
        record[f"{p}_mean"], record[f"{p}_minutes"] = means.get(p, (None, 0))
    sin_mean, cos_mean, dir_minutes, speed, speed_minutes = wind
    record |= {"wind_dir_sin_mean": sin_mean, "wind_dir_cos_mean": cos_mean, "wind_dir_minutes": dir_minutes,
               "wind_speed_mean": speed, "wind_speed_minutes": speed_minutes}
    return record


def test_a_station_hour_record_maps_to_the_same_index_with_its_wind() -> None:
    s, c = unit_vector_mean([350.0, 10.0])
    record = station_hour_record(air_means(80.0), (s, c, 58, 4.0, 59))
    assert validation_errors("station_hour", record) == []
    idx = index_of_station_hour(record, NET)
    assert idx == station_index(AIR, END - HOUR, END, air_means(80.0), wind=wind_of(s, c, 58, 4.0))
    assert idx["wind"] is not None and idx["wind"]["minutes"] == 58 and idx["wind"]["speed_ms"] == 4.0
    valid(idx)
    calm = index_of_station_hour(station_hour_record(air_means(80.0), (None, None, 0, None, 0)), NET)
    assert calm["wind"] is None
    valid(calm)


def test_wind_is_only_on_realtime_air_indices() -> None:
    wind = wind_of(0.0, 1.0, 60, 2.0)
    assert station_index(WATER, END - HOUR, END, {"nh3n": (0.4, 60)}, wind=wind)["wind"] is None
    assert hourly_index(AIR, END - HOUR, END, air_means(80.0))["wind"] is None


# --- clock hour ------------------------------------------------------------------------------


def test_hourly_aqi_from_the_clock_hour_with_o3_as_primary() -> None:
    means = air_means(80.0) | {"o3": (250.0, 50)}
    idx = hourly_index(AIR, END - HOUR, END, means)
    # PM2.5 119 (above); O3 1-h 250 in 200..300 -> 100 + 50 * 50 / 100 = 125.
    assert (idx["index"], idx["value"], idx["primary"]) == ("aqi_hourly", 125, ["o3_1h"])
    valid(idx)


def test_hourly_so2_above_800_takes_its_sub_index_from_a_valid_24h_mean() -> None:
    one = {"so2": (900.0, 60)}
    # HJ 633 Table 1 note (2): SO2 1-h > 800 has no sub-index; the 24-h mean's is used.
    # SO2 24-h 100 in 50..150 -> 50 + 50 * 50 / 100 = 75.
    idx = hourly_index(AIR, END - HOUR, END, one, so2_24h=(100.0, MIN_DAY_HOURS))
    assert idx["value"] == 75
    assert [(i["averaging"], i["count_unit"], i["valid"]) for i in idx["inputs"]] == [("1h", "minutes", True), ("24h", "hours", True)]
    short = hourly_index(AIR, END - HOUR, END, one, so2_24h=(100.0, MIN_DAY_HOURS - 1))  # 24-h mean not valid
    assert short["value"] is None and short["insufficient_data"] and "so2_24h" in short["reason"]
    valid(short)


# --- daily AQI at local midnight --------------------------------------------------------------


def daily_record(end: int, **values: Any) -> dict[str, Any]:
    """A jw.station_clock_hour.v1 record built from the job's own column list."""
    record: dict[str, Any] = {"schema": "jw.station_clock_hour.v1", "station_id": AIR.id, "region": AIR.region, "medium": "air",
                              "window_start": end - HOUR, "window_end": end}
    for name, flink_type in clock_hour_columns(INDEX_PARAMETERS):
        record[name] = None if flink_type == "DOUBLE" else 0
    record.update(values)
    assert validation_errors("station_clock_hour", record) == []
    return record


GOOD_DAY = dict(pm25_mean=50.0, pm25_minutes=60, pm25_24h_mean=50.0, pm25_24h_hours=24, pm10_24h_mean=100.0, pm10_24h_hours=20,
                o3_mean=150.0, o3_minutes=60, o3_24h_mean=120.0, o3_24h_hours=24, o3_1h_max=210.0, o3_8h_max=180.0, o3_8h_max_means=17)


@pytest.mark.parametrize(("end", "season"), [(ms(2026, 12, 10, 23), "winter, CET = UTC+1"), (ms(2026, 7, 15, 22), "summer, CEST = UTC+2")])
def test_daily_aqi_is_emitted_for_the_hour_ending_at_local_midnight(end: int, season: str) -> None:
    out = indices_of_station_clock_hour(daily_record(end, **GOOD_DAY), NET)
    assert [i["index"] for i in out] == ["aqi_hourly", "aqi_daily"], season
    day = out[1]
    # HJ 633-2026 daily report: PM2.5 24-h 50 in 35..60 -> 50 + 50 * 15 / 25 = 80; PM10 24-h 100 in 50..120 ->
    # 50 + 50 * 50 / 70 = 85.7 -> 86; max 8-h O3 180 in 160..215 -> 100 + 50 * 20 / 55 = 118.2 -> 119;
    # max 1-h O3 210 in 200..300 -> 105. AQI 119, primary the 8-h O3.
    assert (day["value"], day["primary"], day["label"], day["standard_id"]) == (119, ["o3_8h"], "Lightly polluted", "HJ 633-2026")
    assert (day["window_start"], day["window_end"]) == (end - 24 * HOUR, end)
    subs = {s["item"]: s["sub_index"] for s in day["detail"]["sub_indices"]}
    assert subs == {"pm25_24h": 80, "pm10_24h": 86, "o3_1h": 105, "o3_8h": 119}
    assert day["detail"]["day"]["local_hours"] == 24 and day["detail"]["day"]["note"] is None
    by = {(i["parameter"], i["averaging"]): i for i in day["inputs"]}
    assert by[("o3", "8h-max")] == {"parameter": "o3", "averaging": "8h-max", "mean": 180.0, "count": 17, "count_unit": "8h-means", "completeness": 1.0, "valid": True}
    assert by[("pm10", "24h")]["count_unit"] == "hours" and by[("pm10", "24h")]["completeness"] == pytest.approx(20 / 24)
    assert by[("o3", "1h-max")]["count"] == 24
    valid(day)
    # One hour later it is 01:00 local: no daily index.
    assert [i["index"] for i in indices_of_station_clock_hour(daily_record(end + HOUR, **GOOD_DAY), NET)] == ["aqi_hourly"]


def test_midnight_is_that_of_the_stations_region() -> None:
    assert is_local_midnight(ms(2026, 7, 15, 22), "Europe/Prague") and not is_local_midnight(ms(2026, 7, 15, 22), "Asia/Shanghai")
    assert is_local_midnight(ms(2026, 7, 15, 16), "Asia/Shanghai")  # China: UTC+8, no DST
    shanghai = Network({"north": Region("north", "North", "Asia/Shanghai")}, {AIR.id: AIR})  # the station's own zone says Prague
    assert [i["index"] for i in indices_of_station_clock_hour(daily_record(ms(2026, 7, 15, 16), **GOOD_DAY), shanghai)] == ["aqi_hourly", "aqi_daily"]
    assert [i["index"] for i in indices_of_station_clock_hour(daily_record(ms(2026, 7, 15, 22), **GOOD_DAY), shanghai)] == ["aqi_hourly"]


def test_daily_values_missing_their_validity_rule_are_left_out_and_none_left_is_insufficient() -> None:
    end = ms(2026, 12, 10, 23)
    short = dict(pm25_24h_mean=50.0, pm25_24h_hours=MIN_DAY_HOURS - 1, o3_24h_hours=MIN_DAY_HOURS - 1, o3_1h_max=210.0,
                 o3_8h_max=180.0, o3_8h_max_means=MIN_O3_8H_MEANS - 1)
    day = indices_of_station_clock_hour(daily_record(end, **short), NET)[1]
    assert day["value"] is None and day["insufficient_data"] and day["detail"] is None
    assert "20 valid hours" in day["reason"] and "14 valid 8-h means" in day["reason"]
    assert day["standard_id"] == "HJ 633-2026" and all(not i["valid"] for i in day["inputs"]) and len(day["inputs"]) == 3
    valid(day)
    # With the 8-h maximum on 14 means it counts alone: AQI 119 from O3 8-h.
    enough = indices_of_station_clock_hour(daily_record(end, **(short | {"o3_8h_max_means": MIN_O3_8H_MEANS})), NET)[1]
    assert (enough["value"], enough["primary"]) == (119, ["o3_8h"])
    # No data at all for the day: still an index, with the reason.
    empty = indices_of_station_clock_hour(daily_record(end), NET)[1]
    assert empty["insufficient_data"] and empty["inputs"] == []
    valid(empty)


def test_daily_edition_follows_the_local_date_of_the_day() -> None:
    # The local day 2026-02-28 ends at 2026-03-01 00:00 CET = 2026-02-28 23:00 UTC: still HJ 633-2012.
    # PM2.5 24-h 50: 2012 bracket 35..75 -> 50 + 50 * 15 / 40 = 68.75 -> 69; 2026 bracket 35..60 -> 80.
    before = daily_aqi(AIR, ms(2026, 2, 28, 23), "Europe/Prague", {"pm25": (50.0, 24)}, None, None)
    after = daily_aqi(AIR, ms(2026, 3, 1, 23), "Europe/Prague", {"pm25": (50.0, 24)}, None, None)
    assert (before["standard_id"], before["value"], before["detail"]["day"]["date"]) == ("HJ 633-2012", 69, "2026-02-28")
    assert (after["standard_id"], after["value"], after["detail"]["day"]["date"]) == ("HJ 633-2026", 80, "2026-03-01")


@pytest.mark.parametrize(("end", "date", "hours", "phrase"), [
    (ms(2026, 3, 29, 22), "2026-03-29", 23.0, "also cover the last 1 hour(s) of the previous day"),  # clocks forward
    (ms(2026, 10, 25, 23), "2026-10-25", 25.0, "leave out the first 1 hour(s) of the day"),  # clocks back
])
def test_dst_days_say_what_the_24_clock_hours_cover(end: int, date: str, hours: float, phrase: str) -> None:
    assert is_local_midnight(end, "Europe/Prague")
    day = local_day(end, "Europe/Prague")
    assert (day["date"], day["local_hours"], day["covered_hours"]) == (date, hours, 24) and phrase in day["note"]
    idx = indices_of_station_clock_hour(daily_record(end, **GOOD_DAY), NET)[1]
    assert idx["value"] == 119 and idx["detail"]["day"]["note"] == day["note"]
    assert idx["window_end"] - idx["window_start"] == 24 * HOUR  # what was averaged, not the calendar day
    nothing = indices_of_station_clock_hour(daily_record(end), NET)[1]
    assert phrase in nothing["reason"]  # the reason says it too when there is no detail
    valid(idx)
    valid(nothing)


def test_water_clock_hours_give_the_class_and_never_a_daily_aqi() -> None:
    rec = daily_record(ms(2026, 12, 10, 23), nh3n_mean=1.2, nh3n_minutes=60, do_mean=6.5, do_minutes=50)
    rec |= {"station_id": WATER.id, "region": WATER.region, "medium": "water"}
    out = indices_of_station_clock_hour(rec, NET)
    assert [(i["index"], i["value"], i["primary"]) for i in out] == [("water_class", 4, ["nh3n"])]


def test_validity_constants_are_the_editions_rules() -> None:
    """The job windows and the index stage use jobs/validity.py; it must say what every HJ 633 edition's data says."""
    for edition in registry().aqi_editions("china"):
        v = edition.validity
        assert v["hourly_mean"]["min_minutes"] == MIN_MINUTES, edition.standard_id
        assert v["daily_mean"]["min_hourly_values"] == MIN_DAY_HOURS, edition.standard_id
        assert v["o3_8h_mean"]["min_hourly_values"] == MIN_O3_8H_HOURS, edition.standard_id
        assert v["o3_daily_max_8h"]["min_valid_8h_means"] == MIN_O3_8H_MEANS, edition.standard_id
        first, last = v["o3_daily_max_8h"]["window"].split("-")  # 8-h means ending 08:00 .. 24:00
        assert int(last[:2]) - int(first[:2]) + 1 == O3_8H_MAX_WINDOW_H, edition.standard_id
