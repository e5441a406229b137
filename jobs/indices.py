"""Station indices from the job's station windows, pure (no Flink, no I/O).

Five kinds (jw.index.v2 `index`):
- aqi_realtime: China AQI, HJ 633 real-time report, from a rolling hour's 1-h means, every
  minute (jw.readings.station1h); carries the hour's wind for the downwind assist.
- water_class_realtime: GB 3838-2002 class from the same rolling hour.
- aqi_hourly: HJ 633 hourly AQI from a clock hour's 1-h means (jw.readings.station_clock1h);
  the SO2 24-h mean rides along as the supporting item of the "SO2 1-h above 800" rule.
- water_class: GB 3838-2002 class per clock hour.
- aqi_daily: HJ 633 daily AQI from the 24-h means, the max 1-h O3 and the max 8-h O3 of the
  24 clock hours ending at local midnight of the station's region.

Validity (jobs/validity.py: GB 3095-2012 Table 4 / HJ 663, kept by the 2026 edition):
a 1-h mean needs >= 45 minutes, a 24-h mean >= 20 valid 1-h means, an 8-h O3 mean >= 6,
the daily max 8-h O3 >= 14 valid 8-h means (those ending 08:00..24:00). An input that
misses its rule is shown with valid=false and left out; when no input is left the index
is "insufficient data" with the reason, never a number. The same functions serve the
streaming stage, replay and tests.

The edition is chosen by the window's date: the UTC date of the window's last instant for
the hourly kinds (as before), the local date of the day for aqi_daily.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import date, datetime, time, timezone
from typing import Any
from zoneinfo import ZoneInfo

from alerts.standards import InsufficientData, china_aqi_daily, china_aqi_realtime, edition_for, registry, water_class
from jobs.validity import (
    AQI_POLLUTANTS,
    DAILY_MEAN_POLLUTANTS,
    INDEX_PARAMETERS,
    MIN_DAY_HOURS,
    MIN_MINUTES,
    MIN_O3_8H_MEANS,
    O3_8H_MAX_WINDOW_H,
    WATER_PARAMETERS,
)
from schemas.models import Averaging, Index, IndexInput, IndexKind, StationClockHour, StationHour, Wind
from schemas.network import Network, Station

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_EXPECTED = {"minutes": 60, "hours": 24, "8h-means": O3_8H_MAX_WINDOW_H}
_ITEM_SUFFIX: dict[str, str] = {"1h": "1h", "24h": "24h", "8h": "8h", "1h-max": "1h", "8h-max": "8h"}  # averaging -> HJ 633 table


def denoise(x: float) -> float:
    """`x` without float noise below 10 significant digits (far below any instrument's resolution).

    The job's rolling sums add and retract values (Flink bounded OVER windows), so a mean ends a few
    ulps off a fresh sum; HJ 633 rounds sub-indices up, so a mean that is exactly on an integer index
    in decimal arithmetic (PM2.5 218.0 -> 268) would otherwise come out one point higher (269).
    """
    return float(f"{x:.10g}")


def make_input(parameter: str, averaging: Averaging, mean: float, count: int, unit: str, needed: int, expected: int | None = None) -> IndexInput:
    """One input entry: the value used, how much data it stands on, and whether that meets the rule."""
    return {
        "parameter": parameter, "averaging": averaging, "mean": denoise(mean), "count": int(count),
        "count_unit": unit,  # type: ignore[typeddict-item]
        "completeness": int(count) / (expected or _EXPECTED[unit]), "valid": int(count) >= needed,
    }


def hour_inputs(means: Mapping[str, tuple[float, int]], names: tuple[str, ...], min_minutes: int = MIN_MINUTES) -> list[IndexInput]:
    """1-h inputs of the parameters with data; `means` maps parameter -> (1-h mean, minutes with data)."""
    return [make_input(p, "1h", means[p][0], means[p][1], "minutes", min_minutes) for p in names if p in means]


def wind_of(sin_mean: float | None, cos_mean: float | None, minutes: int | None, speed_mean: float | None) -> Wind | None:
    """The hour's wind from the mean unit vector of wind_dir (degrees the wind comes FROM).

    Averaging angles directly is wrong across north (350 and 10 average to 180); the vector
    mean gives 0. Its length (steadiness) is 1 for a constant direction and near 0 when the
    directions cancel; then there is no direction to report and the result is None.
    """
    if not minutes or sin_mean is None or cos_mean is None:
        return None
    steadiness = math.hypot(sin_mean, cos_mean)
    if steadiness < 1e-9:
        return None
    from_deg = math.degrees(math.atan2(sin_mean, cos_mean)) % 360.0
    return {
        "from_deg": 0.0 if from_deg >= 360.0 else from_deg,  # -1e-17 % 360 rounds to 360.0
        "speed_ms": None if speed_mean is None else float(speed_mean),
        "steadiness": min(steadiness, 1.0),  # sin^2 + cos^2 may round a hair above 1
        "minutes": int(minutes),
    }


def index_id(station_id: str, kind: str, window_end: int, standard_id: str) -> str:
    """Deterministic: a replay of the same input and edition gives the same id."""
    return hashlib.sha256(f"{station_id}|{kind}|{window_end}|{standard_id}".encode()).hexdigest()[:32]


def _utc_date(window_end: int) -> date:
    return datetime.fromtimestamp((window_end - 1) / 1000, timezone.utc).date()  # the window's own date, not its end's


def _standard_id(air: bool, on: date) -> str:
    return edition_for("china", on).standard_id if air else registry().water_standard(on).standard_id


def _index(station: Station, kind: IndexKind, window_start: int, window_end: int, inputs: list[IndexInput], on: date,
           none_valid: str, wind: Wind | None = None, extra: Mapping[str, Any] | None = None) -> Index:
    """Compute the standard over the valid inputs; none valid (or the standard undefined) -> insufficient data."""
    air = station.medium == "air"
    # HJ 633 items are named by averaging (pm25_24h, o3_8h); GB 3838 by parameter.
    valid = {(f"{i['parameter']}_{_ITEM_SUFFIX[i['averaging']]}" if air else i["parameter"]): i["mean"] for i in inputs if i["valid"]}
    value: int | None = None
    label: str | None = None
    primary: list[str] = []
    detail: dict[str, Any] | None = None
    reason: str | None = none_valid
    standard_id = _standard_id(air, on)
    if valid:
        try:
            if air:
                aqi = (china_aqi_daily if kind == "aqi_daily" else china_aqi_realtime)(valid, on)
                value, label, primary, detail = aqi.aqi, aqi.category.name, list(aqi.primary_pollutants), aqi.to_dict()
            else:
                wc = water_class(valid, waterbody="river", on=on)
                value, label, primary, detail = wc.klass.number, wc.klass.label, list(wc.determining), wc.to_dict()
            standard_id, reason = detail["standard_id"], None
        except InsufficientData as exc:
            reason = str(exc)
    if extra:
        if detail is not None:
            detail = {**detail, **extra}
        if reason is not None and extra.get("note"):
            reason = f"{reason}; {extra['note']}"
    return {
        "schema": "jw.index.v2",
        "index_id": index_id(station.id, kind, window_end, standard_id),
        "station_id": station.id,
        "region": station.region,
        "medium": station.medium,
        "index": kind,
        "standard_id": standard_id,
        "window_start": window_start,
        "window_end": window_end,
        "value": value,
        "label": label,
        "primary": primary,
        "insufficient_data": value is None,
        "reason": reason,
        "inputs": inputs,
        "detail": detail,
        "wind": wind if kind == "aqi_realtime" else None,
    }


def _no_hour(air: bool, min_minutes: int) -> str:
    return f"no {'pollutant' if air else 'parameter'} with >= {min_minutes} minutes of data in the hour"


def station_index(station: Station, window_start: int, window_end: int, means: Mapping[str, tuple[float, int]],
                  min_minutes: int = MIN_MINUTES, wind: Wind | None = None) -> Index:
    """aqi_realtime / water_class_realtime for one rolling hour; `means`: parameter -> (1-h mean, minutes)."""
    air = station.medium == "air"
    inputs = hour_inputs(means, AQI_POLLUTANTS if air else WATER_PARAMETERS, min_minutes)
    return _index(station, "aqi_realtime" if air else "water_class_realtime", window_start, window_end, inputs,
                  _utc_date(window_end), _no_hour(air, min_minutes), wind=wind if air else None)


def hourly_index(station: Station, window_start: int, window_end: int, means: Mapping[str, tuple[float, int]],
                 so2_24h: tuple[float, int] | None = None) -> Index:
    """aqi_hourly / water_class for one clock hour. `so2_24h` (24-h mean, valid hours) is only read
    by HJ 633's rule for an SO2 1-h mean above 800 (its sub-index then comes from the 24-h mean)."""
    air = station.medium == "air"
    inputs = hour_inputs(means, AQI_POLLUTANTS if air else WATER_PARAMETERS)
    if air and so2_24h is not None:
        inputs.append(make_input("so2", "24h", so2_24h[0], so2_24h[1], "hours", MIN_DAY_HOURS))
    return _index(station, "aqi_hourly" if air else "water_class", window_start, window_end, inputs,
                  _utc_date(window_end), _no_hour(air, MIN_MINUTES))


def is_local_midnight(window_end: int, tz: str) -> bool:
    t = datetime.fromtimestamp(window_end / 1000, ZoneInfo(tz))
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


def local_day(window_end: int, tz: str) -> dict[str, Any]:
    """The local day that ends at `window_end` (a local midnight): date, its length in hours, and how
    the 24-clock-hour windows relate to it.

    DST: the job's long windows are 24 clock hours (never calendar days), so on a 23-hour day
    (clocks forward) they also hold the previous day's last hour, and on a 25-hour day (clocks
    back) they miss the day's first hour; the day's max 8-h O3 window shifts by that hour too.
    The index says so rather than pretending to cover the calendar day exactly.
    """
    zone = ZoneInfo(tz)
    day = datetime.fromtimestamp((window_end - 1) / 1000, zone).date()
    start_ms = int(datetime.combine(day, time(0), zone).timestamp() * 1000)
    hours = (window_end - start_ms) / HOUR_MS
    note = None
    if hours < 24:
        note = f"{day} has {hours:g} hours in {tz} (clock change): the 24-h values also cover the last {24 - hours:g} hour(s) of the previous day"
    elif hours > 24:
        note = f"{day} has {hours:g} hours in {tz} (clock change): the 24-h values leave out the first {hours - 24:g} hour(s) of the day"
    return {"date": day.isoformat(), "timezone": tz, "local_hours": hours, "covered_hours": 24, "note": note}


def daily_aqi(station: Station, window_end: int, tz: str, means_24h: Mapping[str, tuple[float, int]],
              o3_1h_max: tuple[float, int] | None, o3_8h_max: tuple[float, int] | None) -> Index:
    """aqi_daily for the day ending at `window_end` (local midnight in `tz`).

    `means_24h`: pollutant -> (mean of the valid 1-h means, valid hours); `o3_1h_max`: (largest valid
    1-h O3, valid O3 hours); `o3_8h_max`: (largest valid 8-h O3 mean, number of valid 8-h means).
    """
    day = local_day(window_end, tz)
    inputs = [make_input(p, "24h", means_24h[p][0], means_24h[p][1], "hours", MIN_DAY_HOURS) for p in DAILY_MEAN_POLLUTANTS if p in means_24h]
    if o3_1h_max is not None:
        inputs.append(make_input("o3", "1h-max", o3_1h_max[0], o3_1h_max[1], "hours", MIN_DAY_HOURS))
    if o3_8h_max is not None:
        inputs.append(make_input("o3", "8h-max", o3_8h_max[0], o3_8h_max[1], "8h-means", MIN_O3_8H_MEANS))
    none_valid = (f"no pollutant with a valid daily value (24-h mean: >= {MIN_DAY_HOURS} valid hours; "
                  f"max 8-h O3: >= {MIN_O3_8H_MEANS} valid 8-h means)")
    return _index(station, "aqi_daily", window_end - DAY_MS, window_end, inputs, date.fromisoformat(day["date"]),
                  none_valid, extra={"day": day, "note": day["note"]})


# --- records of the job's topics -> indices --------------------------------------------------------


def _pairs(record: Mapping[str, Any], value_suffix: str, count_suffix: str) -> dict[str, tuple[float, int]]:
    out = {}
    for p in INDEX_PARAMETERS:
        value = record.get(f"{p}{value_suffix}")
        if value is not None:
            out[p] = (float(value), int(record[f"{p}{count_suffix}"]))
    return out


def hour_means(record: StationHour | StationClockHour) -> dict[str, tuple[float, int]]:
    """parameter -> (1-h mean, minutes) of a station hour or clock hour, for the parameters with data."""
    return _pairs(record, "_mean", "_minutes")


def region_timezone(station: Station, network: Network) -> str:
    region = network.regions.get(station.region)
    return region.timezone if region is not None else station.timezone


def index_of_station_hour(record: StationHour, network: Network) -> Index:
    """The index the stream publishes for one rolling station hour; KeyError for a station not in the registry."""
    station = network.stations[record["station_id"]]
    wind = wind_of(record.get("wind_dir_sin_mean"), record.get("wind_dir_cos_mean"), record.get("wind_dir_minutes"), record.get("wind_speed_mean"))
    return station_index(station, record["window_start"], record["window_end"], hour_means(record), wind=wind)


def indices_of_station_clock_hour(record: StationClockHour, network: Network) -> list[Index]:
    """The hourly index of one station clock hour, plus the daily AQI when the hour ends at local midnight."""
    station = network.stations[record["station_id"]]
    start, end = record["window_start"], record["window_end"]
    days = _pairs(record, "_24h_mean", "_24h_hours")
    out = [hourly_index(station, start, end, hour_means(record), so2_24h=days.get("so2") if station.medium == "air" else None)]
    tz = region_timezone(station, network)
    if station.medium == "air" and is_local_midnight(end, tz):
        o3_hours = int(record.get("o3_24h_hours") or 0)
        o3_1h = None if record.get("o3_1h_max") is None else (float(record["o3_1h_max"]), o3_hours)
        o3_8h = None if record.get("o3_8h_max") is None else (float(record["o3_8h_max"]), int(record["o3_8h_max_means"]))
        out.append(daily_aqi(station, end, tz, days, o3_1h, o3_8h))
    return out
