"""Station indices from the job's rolling one-hour means, pure (no Flink, no I/O).

Air stations get the China real-time AQI (HJ 633, edition chosen by the
window's date) from their 1-h means; water stations get the GB 3838-2002 class.
A mean only counts when its hour holds enough minutes of data (STANDARDS.md:
an hourly mean needs >= 45 valid minutes); when no pollutant or parameter
qualifies the index is "insufficient data" with the reason, never a number.
The same function serves the streaming stage, replay and tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone

from alerts.standards import InsufficientData, china_aqi_realtime, water_class
from schemas.models import Index, IndexInput, StationHour
from schemas.network import Network, Station

AQI_POLLUTANTS = ("pm25", "pm10", "so2", "no2", "co", "o3")  # HJ 633 real-time items, 1-h means
WATER_PARAMETERS = ("ph", "do", "codmn", "nh3n", "tp")  # GB 3838-2002 items the network measures
INDEX_PARAMETERS = AQI_POLLUTANTS + WATER_PARAMETERS  # what the job pivots per station and hour
MIN_MINUTES = 45


def _inputs(means: Mapping[str, tuple[float, int]], names: tuple[str, ...], min_minutes: int) -> list[IndexInput]:
    return [
        {"parameter": p, "mean": means[p][0], "minutes": means[p][1], "completeness": means[p][1] / 60, "valid": means[p][1] >= min_minutes}
        for p in names
        if p in means
    ]


def hour_means(record: StationHour) -> dict[str, tuple[float, int]]:
    """parameter -> (mean, minutes) of a jw.station_hour.v1 record, for the parameters with data."""
    out = {}
    for p in INDEX_PARAMETERS:
        mean = record.get(f"{p}_mean")  # type: ignore[misc]
        if mean is not None:
            out[p] = (float(mean), int(record[f"{p}_minutes"]))  # type: ignore[literal-required]
    return out


def index_of_station_hour(record: StationHour, network: Network, min_minutes: int = MIN_MINUTES) -> Index:
    """The index the stream publishes for one station hour; KeyError for a station not in the registry."""
    station = network.stations[record["station_id"]]
    return station_index(station, record["window_start"], record["window_end"], hour_means(record), min_minutes)


def station_index(station: Station, window_start: int, window_end: int, means: Mapping[str, tuple[float, int]], min_minutes: int = MIN_MINUTES) -> Index:
    """The station's index for one rolling-hour window; `means` maps parameter -> (1-h mean, minutes with data)."""
    on = datetime.fromtimestamp((window_end - 1) / 1000, timezone.utc).date()  # the hour's own date, not its end's
    names, kind = (AQI_POLLUTANTS, "aqi_realtime") if station.medium == "air" else (WATER_PARAMETERS, "water_class")
    inputs = _inputs(means, names, min_minutes)
    valid = {i["parameter"]: i["mean"] for i in inputs if i["valid"]}
    value: int | None = None
    label: str | None = None
    primary: list[str] = []
    detail: dict | None = None
    reason: str | None = None
    if not valid:
        reason = f"no {'pollutant' if kind == 'aqi_realtime' else 'parameter'} with >= {min_minutes} minutes of data in the hour"
        standard_id = "HJ 633" if kind == "aqi_realtime" else "GB 3838"
    else:
        try:
            if kind == "aqi_realtime":
                result = china_aqi_realtime(valid, on)
                value, label, primary = result.aqi, result.category.name, list(result.primary_pollutants)
            else:
                result = water_class(valid, waterbody="river", on=on)
                value, label, primary = result.klass.number, result.klass.label, list(result.determining)
            detail = result.to_dict()
            standard_id = detail["standard_id"]
        except InsufficientData as exc:
            reason, standard_id = str(exc), "HJ 633" if kind == "aqi_realtime" else "GB 3838"
    return {
        "schema": "jw.index.v1",
        "index_id": hashlib.sha256(f"{station.id}|{kind}|{window_end}|{standard_id}".encode()).hexdigest()[:32],
        "station_id": station.id,
        "region": station.region,
        "medium": station.medium,
        "index": kind,  # type: ignore[typeddict-item]
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
    }
