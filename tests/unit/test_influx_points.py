"""Conversion of aggregates and alerts to InfluxDB points (line protocol checked exactly)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.influx_sink import Versions, aggregate_point, alert_point, to_point
from schemas.models import Aggregate, validation_errors
from schemas.topics import ALERTS, APPORTIONMENT, READINGS_ALIGNED, READINGS_HOURLY, STATION_HOURS
from tests.samples import sample_alert

WINDOW_END = 1_767_225_600_000  # 2026-01-01T00:00:00Z in ms


def make_aggregate(**over: Any) -> Aggregate:
    doc: dict[str, Any] = {
        "schema": "jw.aggregate.v3", "station_id": "n-a03", "region": "north", "medium": "air",
        "parameter": "pm25", "unit": "ug/m3", "window": "1h-rolling", "window_start": WINDOW_END - 3_600_000,
        "window_end": WINDOW_END, "mean": 35.5, "min": 20.0, "max": 61.25, "count": 240, "duplicates": 2, "clock_corrected": 3, "minutes": 58,
        "expected": 60.0, "completeness": 0.9667, "version": 1,
    }
    doc.update(over)
    assert validation_errors("aggregate", doc) == []
    return doc  # type: ignore[return-value]


def test_aggregate_point() -> None:
    assert aggregate_point(make_aggregate()).to_line_protocol() == (
        "aggregate,medium=air,parameter=pm25,region=north,station_id=n-a03,window=1h-rolling "
        "clock_corrected=3i,completeness=0.9667,count=240i,duplicates=2i,expected=60,max=61.25,mean=35.5,min=20,minutes=58i,version=1i "
        f"{WINDOW_END}"
    )


def test_integral_json_numbers_stay_float_fields() -> None:
    # InfluxDB fixes a field's type on first write: 35 must not become an integer field (35i);
    # in line protocol a number without a suffix is a float.
    line = aggregate_point(make_aggregate(mean=35, min=35, max=35, completeness=1, expected=60)).to_line_protocol()
    assert "clock_corrected=3i,completeness=1,count=240i,duplicates=2i,expected=60,max=35,mean=35,min=35,minutes=58i,version=1i " in line


def test_a_revision_is_not_overwritten_by_its_first_result_read_after_it() -> None:
    versions = Versions(capacity=2)
    first, revised = make_aggregate(window="1m"), make_aggregate(window="1m", version=3, count=241)
    assert not versions.supersedes(first)  # nothing revised yet: written
    assert not versions.supersedes(revised)
    assert versions.supersedes(first)  # read after its revision: skipped
    assert not versions.supersedes(make_aggregate(window="1m", version=4))  # a later revision is written
    assert not versions.supersedes(make_aggregate(window="1h-rolling"))  # another window kind is another series
    for k in range(2):  # the memory is bounded: the oldest revised windows are forgotten
        versions.supersedes(make_aggregate(window="1m", version=2, window_start=k))
    assert not versions.supersedes(first)


def test_alert_point() -> None:
    assert alert_point(sample_alert(window_end=WINDOW_END)).to_line_protocol() == (
        "alert,indicator=aqi,kind=air,origin_region=north,region=north,rule_id=jw-tiers/north/air/aqi,scope=station,subject=n-a03,tier=red "
        'action="escalate",affected_regions="central",alert_id="a-1",completeness=1,episode_id="a-0",previous_tier="yellow",'
        'reason="aqi 212 > 200 for 61 obs / 120 min",rule_version=1i,threshold=200,value=212 '
        f"{WINDOW_END}"
    )


def test_clear_has_no_threshold_field() -> None:
    line = alert_point(sample_alert(window_end=WINDOW_END, tier="green", previous_tier="red", threshold=None, value=None)).to_line_protocol()
    assert "threshold" not in line and "value" not in line and ",tier=green " in line


def test_to_point_routes_by_topic_and_validates() -> None:
    assert to_point(READINGS_ALIGNED, make_aggregate(window="1m")).to_line_protocol().startswith("aggregate,")
    assert to_point(READINGS_HOURLY, make_aggregate()).to_line_protocol().startswith("aggregate,")
    assert to_point(ALERTS, sample_alert(window_end=WINDOW_END)).to_line_protocol().startswith("alert,")
    with pytest.raises(ValueError, match="not a valid alert"):
        to_point(ALERTS, make_aggregate())
    with pytest.raises(ValueError, match="mean"):
        to_point(READINGS_HOURLY, {**make_aggregate(), "mean": "high"})


def test_index_point_has_a_value_only_when_there_is_one() -> None:
    from datetime import datetime, timezone

    from connectors.influx_sink import index_point
    from jobs.indices import station_index
    from schemas.network import Station

    station = Station("n-a01", "north", "air", 49.4, 17.4, "Europe/Prague", ("pm25",))
    end = int(datetime(2026, 11, 22, 10, tzinfo=timezone.utc).timestamp() * 1000)
    full = index_point(station_index(station, end - 3_600_000, end, {"pm25": (80.0, 60)})).to_line_protocol()
    assert full.startswith("index,index=aqi_realtime,region=north,standard_id=HJ\\ 633-2026,station_id=n-a01 ")
    assert "value=119i" in full and 'label="Lightly polluted"' in full and full.endswith(f" {end}")  # millisecond precision
    empty = index_point(station_index(station, end - 3_600_000, end, {"pm25": (80.0, 10)})).to_line_protocol()
    assert "insufficient_data=true" in empty and "value=" not in empty


def test_station_hour_point_has_the_parameters_the_station_had() -> None:
    hour = {
        "schema": "jw.station_hour.v2", "station_id": "n-a03", "region": "north", "medium": "air",
        "window_start": WINDOW_END - 3_600_000, "window_end": WINDOW_END, "pm25_mean": 35, "pm25_minutes": 58, "o3_mean": None, "o3_minutes": 0,
        "wind_speed_mean": 2.5, "wind_speed_minutes": 60, "wind_dir_sin_mean": None, "wind_dir_cos_mean": None, "wind_dir_minutes": 0,
    }
    assert validation_errors("station_hour", hour) == []
    assert to_point(STATION_HOURS, hour).to_line_protocol() == (
        "station_hour,medium=air,region=north,station_id=n-a03 o3_minutes=0i,pm25_mean=35,pm25_minutes=58i,"
        f"wind_dir_minutes=0i,wind_speed_mean=2.5,wind_speed_minutes=60i {WINDOW_END}"
    )


def sample_apportionment(**over: Any) -> Any:
    """central's PM2.5 over the 6 h to WINDOW_END: 38 % from north, with its bootstrap interval."""
    rec: dict[str, Any] = {
        "schema": "jw.apportionment.v1", "record_id": f"transport:central:pm25:{WINDOW_END - 6 * 3_600_000}", "kind": "transport",
        "scope": "region", "receptor": "central", "region": "central", "pollutant": "pm25",
        "window_start": WINDOW_END - 6 * 3_600_000, "window_end": WINDOW_END, "basis": "share", "unit": "1",
        "shares": {"north": 0.38, "local": 0.62},
        "uncertainty": {"north": {"sd": 0.04, "lo": 0.31, "hi": 0.45}, "local": {"sd": 0.04, "lo": 0.55, "hi": 0.69}},
        "amounts": {"north": 11.4, "local": 18.6}, "fit": {"r2": 0.91, "rmse": 1.5, "n_steps": 30},
        "origin_region": "north", "affected_regions": ["central"],
        "provenance": {"model_version": "transport-nnls/1", "stations": [], "wind_from_deg": None, "wind_speed_ms": None, "seed": 490896},
    }
    rec.update(over)
    return rec


def test_apportionment_point() -> None:
    assert to_point(APPORTIONMENT, sample_apportionment()).to_line_protocol() == (
        "apportionment,kind=transport,origin=north,pollutant=pm25,receptor=central,region=central "
        'affected_regions="central",amount_local=18.6,amount_north=11.4,model_version="transport-nnls/1",n_steps=30i,'
        f'r2=0.91,record_id="transport:central:pm25:{WINDOW_END - 6 * 3_600_000}",rmse=1.5,'
        "share_local=0.62,share_local_hi=0.69,share_local_lo=0.55,share_local_sd=0.04,"
        "share_north=0.38,share_north_hi=0.45,share_north_lo=0.31,share_north_sd=0.04 "
        f"{WINDOW_END}"
    )


def test_apportionment_without_origin_or_fit() -> None:
    line = to_point(APPORTIONMENT, sample_apportionment(shares={"local": 1}, uncertainty={}, amounts={}, origin_region=None,
                                                        affected_regions=[], fit={"r2": None, "rmse": None, "n_steps": 0})).to_line_protocol()
    assert ",origin=none," in line and "share_local=1 " in line and "r2" not in line and "_sd" not in line
    with pytest.raises(ValueError, match="not a valid apportionment"):
        to_point(APPORTIONMENT, sample_apportionment(kind="plume"))
