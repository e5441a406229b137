"""Conversion of aggregates, station hours and minutes, indices, alerts and apportionment to InfluxDB points (line protocol checked exactly)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.influx_sink import Versions, aggregate_point, alert_point, station_minute_point, to_point
from schemas.models import Aggregate, progress_marker, validation_errors
from schemas.topics import ALERTS, APPORTIONMENT, READINGS_ALIGNED, READINGS_HOURLY, STATION_HOURS, STATION_MINUTES
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
        'affected_regions="central",amount_local=18.6,amount_north=11.4,basis="share",model_version="transport-nnls/1",n_steps=30i,'
        f'r2=0.91,record_id="transport:central:pm25:{WINDOW_END - 6 * 3_600_000}",rmse=1.5,'
        "share_local=0.62,share_local_hi=0.69,share_local_lo=0.55,share_local_sd=0.04,"
        'share_north=0.38,share_north_hi=0.45,share_north_lo=0.31,share_north_sd=0.04,unit="1" '
        f"{WINDOW_END}"
    )


def test_apportionment_without_origin_or_fit() -> None:
    line = to_point(APPORTIONMENT, sample_apportionment(shares={"local": 1}, uncertainty={}, amounts={}, origin_region=None,
                                                        affected_regions=[], fit={"r2": None, "rmse": None, "n_steps": 0})).to_line_protocol()
    assert ",origin=none," in line and "share_local=1," in line and "r2" not in line and "_sd" not in line
    with pytest.raises(ValueError, match="not a valid apportionment"):
        to_point(APPORTIONMENT, sample_apportionment(kind="plume"))


def test_water_reach_point_carries_its_basis_and_unit() -> None:
    """A reach's load added, per responsible region: kg/d (basis load) must not be read as mg/L."""
    rec = sample_apportionment(
        record_id="water_reach:c-w02>s-w01:nh3n:0", kind="water_reach", scope="reach", receptor="c-w02>s-w01", pollutant="nh3n",
        basis="load", unit="kg/d", shares={"central": 1.0}, uncertainty={}, amounts={"central": 86.4},
        fit={"r2": None, "rmse": None, "n_steps": 6}, origin_region="central", affected_regions=["south"],
        provenance={"model_version": "water-reach/1", "stations": [], "wind_from_deg": None, "wind_speed_ms": None, "seed": 0})
    assert to_point(APPORTIONMENT, rec).to_line_protocol() == (
        "apportionment,kind=water_reach,origin=central,pollutant=nh3n,receptor=c-w02>s-w01,region=central "
        'affected_regions="south",amount_central=86.4,basis="load",model_version="water-reach/1",n_steps=6i,'
        'record_id="water_reach:c-w02>s-w01:nh3n:0",share_central=1,unit="kg/d" '
        f"{WINDOW_END}"
    )


def test_source_factor_point_has_the_factors_and_the_models_fit() -> None:
    model = {
        "refit_window_start": WINDOW_END - 145 * 3_600_000, "refit_window_end": WINDOW_END - 3_600_000, "refit_every_h": 24, "n_factors": 2,
        "species": ["pm25", "so2"], "n_rows": 1440, "q": 2900.5, "q_robust": 2800.0, "q_exp": 2872.0, "q_ratio": 1.009923,
        "frac_scaled_over_3": 0.004, "converged": True, "error_fraction": 0.1,
        "profiles": {"f_pm25": {"pm25": 0.8, "so2": 0.1}, "f_so2": {"pm25": 0.2, "so2": 0.9}},
    }
    rec = sample_apportionment(
        record_id=f"source_factor:north:pm25:{WINDOW_END - 3_600_000}", kind="source_factor", receptor="north", region="north",
        window_start=WINDOW_END - 3_600_000, unit="ug/m3", shares={"f_pm25": 0.75, "f_so2": 0.25}, uncertainty={},
        amounts={"f_pm25": 30.0, "f_so2": 10.0}, fit={"r2": None, "rmse": 2.5, "n_steps": 10}, origin_region=None, affected_regions=[],
        provenance={"model_version": "pmf-whals/1", "stations": [], "wind_from_deg": None, "wind_speed_ms": None, "seed": 495000,
                    "factor_model": model})
    assert to_point(APPORTIONMENT, rec).to_line_protocol() == (
        "apportionment,kind=source_factor,origin=none,pollutant=pm25,receptor=north,region=north "
        'affected_regions="",amount_f_pm25=30,amount_f_so2=10,basis="share",model_version="pmf-whals/1",n_factors=2i,n_steps=10i,'
        f'q_ratio=1.009923,record_id="source_factor:north:pm25:{WINDOW_END - 3_600_000}",refit_window_end={WINDOW_END - 3_600_000}i,'
        'rmse=2.5,share_f_pm25=0.75,share_f_so2=0.25,unit="ug/m3" '
        f"{WINDOW_END}"
    )


def test_apportionment_progress_markers_are_not_data() -> None:
    assert to_point(APPORTIONMENT, progress_marker(WINDOW_END, "jw-apportion-stage")) is None
    with pytest.raises(ValueError, match="not a valid apportionment"):  # an unknown marker version is not skipped silently
        to_point(APPORTIONMENT, {"schema": "jw.apportionment_progress.v2", "emitted_through": WINDOW_END, "stage": "x"})


def make_station_minute(**over: Any) -> dict[str, Any]:
    """n-a03's minute to WINDOW_END: PM2.5 calibrated by a registry model, PM10 uncalibrated (no model),
    O3 with only invalid-status readings (qc STATUS, no value), the other parameters absent or null."""
    doc: dict[str, Any] = {
        "schema": "jw.station_minute.v1", "station_id": "n-a03", "region": "north", "medium": "air",
        "window_start": WINDOW_END - 60_000, "window_end": WINDOW_END, "rh": 61.5, "temp": 8,
        "pm25_raw": 41.2, "pm25": 36.5, "pm25_model": "colocation-2026-09@2", "pm25_qc": 0,
        "pm10_raw": 60, "pm10": 60, "pm10_model": None, "pm10_qc": 8,
        "o3_raw": None, "o3": None, "o3_model": None, "o3_qc": 16,
        "so2_raw": None, "so2": None, "so2_model": None, "so2_qc": None,
    }
    doc.update(over)
    assert validation_errors("station_minute", doc) == []
    return doc


def test_station_minute_point() -> None:
    assert to_point(STATION_MINUTES, make_station_minute()).to_line_protocol() == (
        "station_minute,medium=air,region=north,station_id=n-a03 "
        'o3_qc=16i,pm10=60,pm10_qc=8i,pm10_raw=60,pm25=36.5,pm25_model="colocation-2026-09@2",pm25_qc=0i,pm25_raw=41.2,'
        f"rh=61.5,temp=8 {WINDOW_END}"
    )


def test_station_minute_fields_keep_their_types_and_nulls_are_left_out() -> None:
    point = station_minute_point(make_station_minute(rh=None, temp=None, pm25=None, pm25_model=None, pm25_qc=32, pm10_qc=8.0))  # type: ignore[arg-type]
    assert point is not None
    fields = point._fields
    # calibration missing: the raw value and the flag are stored, the calibrated value is not
    assert fields == {"pm25_raw": 41.2, "pm25_qc": 32, "pm10": 60.0, "pm10_raw": 60.0, "pm10_qc": 8, "o3_qc": 16}
    assert all(type(fields[k]) is int for k in ("pm25_qc", "pm10_qc", "o3_qc"))  # qc an integer field even if JSON said 8.0
    assert all(type(fields[k]) is float for k in ("pm10", "pm10_raw"))  # 60 stays a float field
    line = point.to_line_protocol()
    assert "rh=" not in line and "temp=" not in line and "pm25=" not in line and "_model" not in line and "so2" not in line
    # the model is a field (provenance), never a tag: tags are the station's identity only
    assert point._tags == {"station_id": "n-a03", "region": "north", "medium": "air"}


def test_water_station_minute() -> None:
    doc = {"schema": "jw.station_minute.v1", "station_id": "c-w01", "region": "central", "medium": "water",
           "window_start": WINDOW_END - 60_000, "window_end": WINDOW_END, "rh": None, "temp": None,
           "ph_raw": 7.4, "ph": 7.4, "ph_model": None, "ph_qc": 0, "nh3n_raw": 0.5, "nh3n": 0.45, "nh3n_model": "lab-fit@1", "nh3n_qc": 2}
    assert to_point(STATION_MINUTES, doc).to_line_protocol() == (
        'station_minute,medium=water,region=central,station_id=c-w01 nh3n=0.45,nh3n_model="lab-fit@1",nh3n_qc=2i,nh3n_raw=0.5,'
        f"ph=7.4,ph_qc=0i,ph_raw=7.4 {WINDOW_END}"
    )


def test_station_minute_with_nothing_to_store_is_skipped() -> None:
    nothing = {k: None for k in make_station_minute() if k.startswith(("pm", "o3", "so2")) or k in ("rh", "temp")}
    assert to_point(STATION_MINUTES, make_station_minute(**nothing)) is None
    # a non-finite value (JSON NaN) counts as null: line protocol cannot carry it
    assert to_point(STATION_MINUTES, make_station_minute(**{**nothing, "rh": float("nan")})) is None
    assert to_point(STATION_MINUTES, make_station_minute(**{**nothing, "pm25_qc": 0})).to_line_protocol() == (
        f"station_minute,medium=air,region=north,station_id=n-a03 pm25_qc=0i {WINDOW_END}"
    )


def test_invalid_station_minutes_are_refused() -> None:
    with pytest.raises(ValueError, match="not a valid station_minute"):
        to_point(STATION_MINUTES, {**make_station_minute(), "pm25_qc": "ok"})
    with pytest.raises(ValueError, match="not a valid station_minute"):  # an unknown parameter is not stored under a made-up name
        to_point(STATION_MINUTES, {**make_station_minute(), "benzene": 1.0})
    with pytest.raises(ValueError, match="not a valid station_minute"):
        to_point(STATION_MINUTES, {**make_station_minute(), "pm25_qc": -1})
    with pytest.raises(ValueError, match="window_end"):
        to_point(STATION_MINUTES, {k: v for k, v in make_station_minute().items() if k != "window_end"})
