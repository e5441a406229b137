"""The job's station windows and the indices built from them, on the real stack.

25 hours of synthetic minute readings for one air and one water station go straight
to Kafka jw.readings.raw (no bridge: exact values and times), across two local
midnights of the stations' region (Europe/Prague, CET). The embedded Flink job and
the index stage run as in production. Everything they publish is compared with an
independent pandas reference computed here from the readings and the definitions
(GB 3095 Table 4 validity, HJ 633 / GB 3838 via alerts.standards):

- jw.readings.station_clock1h: 1-h means and minutes, 24-h means of valid hours and
  their count, O3 8-h means, the max 1-h and max 8-h O3;
- jw.readings.station1h: the hour's wind (unit-vector mean of wind_dir) for a window
  whose directions straddle north;
- jw.indices: aqi_hourly / water_class for every clock hour, aqi_daily at both local
  midnights (the first with 1 hour of data: insufficient; the second: a number),
  aqi_realtime with its wind.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import date, datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from confluent_kafka import Producer

from alerts.standards import china_aqi_daily, china_aqi_realtime, water_class
from calibration.registry import Registry
from jobs.index_stage import IndexStage
from jobs.validity import INDEX_PARAMETERS
from jointwatch.stack.flink import start_embedded_job
from schemas.models import validation_errors
from schemas.network import Station
from schemas.parameters import PARAMETERS
from schemas.topics import INDICES, READINGS_RAW, STATION_CLOCK_HOURS, STATION_HOURS, namespaced
from tests.integration.background import running
from tests.conftest import RunningStack
from tests.integration.kafka_read import read_until
from tests.quality_reference import station_minutes

pytestmark = [pytest.mark.integration, pytest.mark.flink]

HOUR, MINUTE = 3_600_000, 60_000
START = int(datetime(2026, 11, 21, 22, tzinfo=timezone.utc).timestamp() * 1000)  # 23:00 CET
HOURS = 25  # closed clock hours: ending 2026-11-21 23:00 UTC (local midnight) .. 2026-11-22 23:00 UTC (local midnight)
TAIL_MIN = 10  # readings after the last hour, so the watermark (30 s behind) closes it
AIR_ID, WATER_ID = "n-a01", "n-w01"
AIR_PARAMS = ("pm25", "pm10", "so2", "no2", "co", "o3", "wind_dir", "wind_speed")
WATER_PARAMS = ("ph", "do", "codmn", "nh3n", "tp")
# (station, parameter, hour index) -> minutes with data, where not all 60: both sides of the 45-minute rule,
# and three short O3 hours so some 8-h means have < 6 valid hours.
SHORT = {(AIR_ID, "pm25", 3): 40, (AIR_ID, "pm25", 4): 45, (AIR_ID, "o3", 1): 30, (AIR_ID, "o3", 2): 44, (AIR_ID, "o3", 3): 20,
         (AIR_ID, "no2", 12): 0, (WATER_ID, "nh3n", 2): 44, (WATER_ID, "do", 8): 45}
FAULTY = {(AIR_ID, "so2", 10)}  # status F the whole hour: never valid
WIND_CHECK_END = START + 14 * HOUR  # the rolling hour 11:00-12:00 UTC: wind from 350 and 10 degrees


def value(p: str, h: int, m: int, rng: np.random.Generator) -> float:
    """Smooth diurnal shapes plus noise; the afternoon O3 and morning PM peaks give non-trivial AQIs."""
    hour_utc = (22 + h) % 24
    if p == "wind_dir":
        return (350.0 if m % 2 else 10.0) if h < 16 else round(float(230 + rng.normal(0, 12)), 4)  # straddling north, then south-west
    base = {
        "pm25": 45 + 35 * math.exp(-((hour_utc - 8) ** 2) / 8), "pm10": 80 + 40 * math.exp(-((hour_utc - 8) ** 2) / 8),
        "so2": 12.0, "no2": 35 + 15 * math.cos(hour_utc / 3), "co": 0.8, "o3": 40 + 150 * math.exp(-((hour_utc - 14) ** 2) / 10),
        "wind_speed": 3.0, "ph": 7.6, "do": 6.8, "codmn": 3.5, "nh3n": 0.4 + 0.9 * math.exp(-((hour_utc - 6) ** 2) / 6), "tp": 0.12,
    }[p]
    noise = {"co": 0.05, "ph": 0.05, "do": 0.2, "codmn": 0.2, "nh3n": 0.03, "tp": 0.01, "wind_speed": 0.5}.get(p, 4.0)
    return round(max(0.0, base + float(rng.normal(0, noise))), 4)


def synthetic_readings(seed: int = 11) -> list[dict[str, Any]]:
    """jw.reading.v2 documents, minute by minute in event-time order (as a gateway would send them)."""
    rng = np.random.default_rng(seed)
    out = []
    for minute in range(HOURS * 60 + TAIL_MIN):
        h, m = divmod(minute, 60)
        for station, region, medium, params in ((AIR_ID, "north", "air", AIR_PARAMS), (WATER_ID, "north", "water", WATER_PARAMS)):
            for p in params:
                if m >= SHORT.get((station, p, h), 60):
                    continue
                t = START + minute * MINUTE + 5_000 + int(rng.integers(0, 50_000))
                out.append({
                    "schema": "jw.reading.v2", "reading_id": f"{station}/{p}/{t}", "station_id": station, "region": region,
                    "medium": medium, "parameter": p, "value": value(p, h, m, rng), "unit": PARAMETERS[p].unit,
                    "event_time": t, "received_at": t + 800, "device_time": str(t), "time_basis": "epoch_ms", "seq": minute,
                    "status": "F" if (station, p, h) in FAULTY else "N", "clock_corrected": False, "clock_offset_ms": 0,
                })
    return sorted(out, key=lambda r: r["event_time"])


# --- the reference ------------------------------------------------------------------------------


def reference_hours(readings: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """Per station: a frame indexed by clock-hour end (every hour of the run), with the 1-h, 24-h and O3 columns."""
    df = pd.DataFrame(readings)
    df = df[df["status"].isin(["N", "S"])]
    # the minutes QC leaves out of the hours (none is planned; a chance spike in the noise would be)
    qc = station_minutes(readings, Registry("none", "pass", {}))
    ok = qc[[c for c in qc.columns if c.endswith("_ok")]].rename(columns=lambda c: c.removesuffix("_ok")).stack()
    ok.index.names = ["station_id", "minute_end", "parameter"]
    df["minute_end"] = (df["event_time"] // MINUTE + 1) * MINUTE
    keys = pd.MultiIndex.from_frame(df[["station_id", "minute_end", "parameter"]])
    df = df[ok.reindex(keys, fill_value=True).to_numpy() | ~df["parameter"].isin(INDEX_PARAMETERS).to_numpy()]
    df["hour_end"] = (df["event_time"] // HOUR + 1) * HOUR
    df["minute"] = df["event_time"] // MINUTE
    ends = pd.Index([START + (h + 1) * HOUR for h in range(HOURS)], name="hour_end")
    out = {}
    for station, group in df.groupby("station_id"):
        g = group.groupby(["parameter", "hour_end"]).agg(mean=("value", "mean"), minutes=("minute", "nunique"))
        frame = pd.DataFrame(index=ends)
        for p in sorted(set(g.index.get_level_values(0)) & set(INDEX_PARAMETERS)):  # what the job pivots
            one = g.loc[p].reindex(ends)
            frame[f"{p}_mean"] = one["mean"]
            frame[f"{p}_minutes"] = one["minutes"].fillna(0).astype(int)
            valid = one["mean"].where(one["minutes"] >= 45)  # GB 3095 Table 4: a 1-h mean needs 45 minutes
            frame[f"{p}_24h_mean"] = valid.rolling(24, min_periods=1).mean()  # rolling skips the NaN (invalid) hours
            frame[f"{p}_24h_hours"] = valid.rolling(24, min_periods=1).count().astype(int)
            if p == "o3":
                mean8, count8 = valid.rolling(8, min_periods=1).mean(), valid.rolling(8, min_periods=1).count().astype(int)
                frame["o3_8h_mean"], frame["o3_8h_hours"] = mean8, count8
                valid8 = mean8.where(count8 >= 6)
                frame["o3_8h_max"] = valid8.rolling(17, min_periods=1).max()  # 8-h means ending in the last 17 hours
                frame["o3_8h_max_means"] = valid8.rolling(17, min_periods=1).count().astype(int)
                frame["o3_1h_max"] = valid.rolling(24, min_periods=1).max()
        out[station] = frame
    return out


def none_if_nan(x: Any) -> Any:
    return None if isinstance(x, float) and math.isnan(x) else x


def expected_hourly(station: Station, row: pd.Series, end: int) -> tuple[int | None, list[str]]:
    on = datetime.fromtimestamp((end - 1) / 1000, timezone.utc).date()
    if station.medium == "air":
        valid = {f"{p}_1h": row[f"{p}_mean"] for p in ("pm25", "pm10", "so2", "no2", "co", "o3") if row.get(f"{p}_minutes", 0) >= 45}
        r = china_aqi_realtime(valid, on) if valid else None
        return (r.aqi, list(r.primary_pollutants)) if r else (None, [])
    valid = {p: row[f"{p}_mean"] for p in WATER_PARAMS if row.get(f"{p}_minutes", 0) >= 45}
    w = water_class(valid, "river", on) if valid else None
    return (w.klass.number, list(w.determining)) if w else (None, [])


def expected_daily(row: pd.Series, local_date: date) -> tuple[int | None, list[str], dict[str, tuple[float, int, bool]]]:
    inputs = {f"{p}_24h": (row[f"{p}_24h_mean"], int(row[f"{p}_24h_hours"]), row[f"{p}_24h_hours"] >= 20) for p in ("pm25", "pm10", "so2", "no2", "co")
              if not math.isnan(row[f"{p}_24h_mean"])}
    inputs["o3_1h"] = (row["o3_1h_max"], int(row["o3_24h_hours"]), row["o3_24h_hours"] >= 20)
    inputs["o3_8h"] = (row["o3_8h_max"], int(row["o3_8h_max_means"]), row["o3_8h_max_means"] >= 14)
    valid = {item: v for item, (v, _, ok) in inputs.items() if ok}
    r = china_aqi_daily(valid, local_date) if valid else None
    return (r.aqi if r else None), (list(r.primary_pollutants) if r else []), inputs


# --- the run -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(stack: RunningStack) -> Iterator[dict[str, Any]]:
    s = stack.isolated()
    readings = synthetic_readings()
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True})
    raw = namespaced(READINGS_RAW, s.namespace)
    for r in readings:
        producer.produce(raw, key=r["station_id"], value=json.dumps(r))
        producer.poll(0)
    assert producer.flush(30) == 0
    # Idle partitions (no station of ours) stop holding the watermark back after 5 s instead of 30.
    job = start_embedded_job(s, "--startup-mode", "earliest-offset", "--idle-timeout", "5")
    stage = IndexStage(s, stack.network, group_id=f"test-windows-{s.namespace}")
    topics = {t: namespaced(t, s.namespace) for t in (STATION_CLOCK_HOURS, STATION_HOURS, INDICES)}
    try:
        with running(stage.run, "index-stage"):

            def complete(messages: list[tuple[str, Any]]) -> bool:
                clock = sum(1 for t, _ in messages if t == topics[STATION_CLOCK_HOURS])
                kinds = [d["index"] for t, d in messages if t == topics[INDICES]]
                return clock >= 2 * HOURS and kinds.count("aqi_daily") >= 2 and kinds.count("aqi_hourly") >= HOURS and kinds.count("water_class") >= HOURS
            messages = read_until(s.kafka_bootstrap, list(topics.values()), complete, timeout_s=240)
            assert complete(messages), f"job alive: {job.running()}; log {job.log_file}:\n{job.tail()}"
            # A little longer: anything beyond the expected records would be a bug (e.g. a second emission).
            more = read_until(s.kafka_bootstrap, list(topics.values()), lambda m: False, timeout_s=5)
            messages = more if len(more) >= len(messages) else messages
    finally:
        job.stop()
    by_topic: dict[str, list[Any]] = {t.name: [d for name, d in messages if name == topics[t]] for t in topics}
    yield {"readings": readings, "network": stack.network, **by_topic}


def test_clock_hours_24h_and_8h_windows_match_the_reference(run: dict[str, Any]) -> None:
    records = run[STATION_CLOCK_HOURS.name]
    assert all(validation_errors("station_clock_hour", d) == [] for d in records)
    ref = reference_hours(run["readings"])
    for station in (AIR_ID, WATER_ID):
        mine = sorted((d for d in records if d["station_id"] == station), key=lambda d: d["window_end"])
        assert [d["window_end"] for d in mine] == list(ref[station].index), f"{station}: one record per closed clock hour, exactly once"
        for d in mine:
            assert d["window_end"] - d["window_start"] == HOUR
            row = ref[station].loc[d["window_end"]]
            for col, want in row.items():
                want, got = none_if_nan(want), d[col]
                where = f"{station} hour ending {datetime.fromtimestamp(d['window_end'] / 1000, timezone.utc):%d %H:%M}: {col}"
                if want is None:
                    assert got is None, where
                elif col.endswith(("_minutes", "_hours", "_means")):
                    assert got == want, f"{where}: {got} != {want}"
                else:
                    assert got == pytest.approx(want, rel=1e-9), where
    air = {d["window_end"]: d for d in records if d["station_id"] == AIR_ID}
    last = air[START + HOURS * HOUR]
    # The rules at work: PM2.5's 40-minute hour is not counted, O3's 44/30/20-minute hours neither.
    assert last["pm25_24h_hours"] == 23 and last["o3_24h_hours"] == 21 and last["so2_24h_hours"] == 23
    assert min(d["o3_8h_hours"] for d in air.values()) < 6 <= max(d["o3_8h_hours"] for d in air.values())
    assert last["o3_8h_max_means"] >= 14 and air[START + HOUR]["o3_8h_max_means"] == 0


def test_rolling_station_hour_wind(run: dict[str, Any]) -> None:
    [hour] = [d for d in run[STATION_HOURS.name] if d["station_id"] == AIR_ID and d["window_end"] == WIND_CHECK_END]
    assert validation_errors("station_hour", hour) == []
    dirs = [r["value"] for r in run["readings"] if r["station_id"] == AIR_ID and r["parameter"] == "wind_dir"
            and WIND_CHECK_END - HOUR <= r["event_time"] < WIND_CHECK_END]
    speeds = [r["value"] for r in run["readings"] if r["station_id"] == AIR_ID and r["parameter"] == "wind_speed"
              and WIND_CHECK_END - HOUR <= r["event_time"] < WIND_CHECK_END]
    rad = np.radians(dirs)
    assert hour["wind_dir_sin_mean"] == pytest.approx(np.sin(rad).mean(), abs=1e-12)
    assert hour["wind_dir_cos_mean"] == pytest.approx(np.cos(rad).mean(), rel=1e-12)
    assert (hour["wind_dir_minutes"], hour["wind_speed_minutes"]) == (60, 60)
    assert hour["wind_speed_mean"] == pytest.approx(np.mean(speeds), rel=1e-12)
    water = [d for d in run[STATION_HOURS.name] if d["station_id"] == WATER_ID]
    assert water and all(d["wind_dir_sin_mean"] is None and d["wind_dir_minutes"] == 0 for d in water)


def test_indices_match_the_reference(run: dict[str, Any]) -> None:
    indices = run[INDICES.name]
    assert all(validation_errors("index", i) == [] for i in indices)
    assert len({i["index_id"] for i in indices}) == len(indices), "every index exactly once"
    net, ref = run["network"], reference_hours(run["readings"])
    kinds = {(AIR_ID, "aqi_hourly"), (WATER_ID, "water_class")}
    for station_id, kind in kinds:
        station = net.stations[station_id]
        mine = sorted((i for i in indices if i["station_id"] == station_id and i["index"] == kind), key=lambda i: i["window_end"])
        assert [i["window_end"] for i in mine] == list(ref[station_id].index)
        for i in mine:
            value, primary = expected_hourly(station, ref[station_id].loc[i["window_end"]], i["window_end"])
            assert (i["value"], i["primary"]) == (value, primary), f"{kind} ending {i['window_end']}"
            assert i["wind"] is None and i["standard_id"] in ("HJ 633-2026", "GB 3838-2002")
    assert any(i["value"] > 100 for i in indices if i["index"] == "aqi_hourly")  # the O3 / PM peaks matter
    # A 44-minute NH3-N hour is shown but not used.
    nh3n_short = next(i for i in indices if i["index"] == "water_class" and i["window_end"] == START + 3 * HOUR)
    assert next(x for x in nh3n_short["inputs"] if x["parameter"] == "nh3n")["valid"] is False


def test_daily_aqi_at_both_local_midnights(run: dict[str, Any]) -> None:
    daily = sorted((i for i in run[INDICES.name] if i["index"] == "aqi_daily"), key=lambda i: i["window_end"])
    assert [i["window_end"] for i in daily] == [START + HOUR, START + HOURS * HOUR]  # 00:00 CET on 22 and 23 November
    assert all(i["station_id"] == AIR_ID for i in daily)  # never for the water station
    first, second = daily
    assert first["value"] is None and first["insufficient_data"] and "20 valid hours" in first["reason"]
    assert {(x["averaging"], x["count"]) for x in first["inputs"] if x["parameter"] == "pm25"} == {("24h", 1)}
    row = reference_hours(run["readings"])[AIR_ID].loc[second["window_end"]]
    value, primary, inputs = expected_daily(row, date(2026, 11, 22))
    assert value is not None and (second["value"], second["primary"]) == (value, primary)
    assert second["standard_id"] == "HJ 633-2026" and second["window_start"] == second["window_end"] - 24 * HOUR
    assert second["detail"]["day"] == {"date": "2026-11-22", "timezone": "Europe/Prague", "local_hours": 24.0, "covered_hours": 24, "note": None}
    got = {(f"{x['parameter']}_{x['averaging'].split('-')[0]}"): (x["mean"], x["count"], x["valid"]) for x in second["inputs"]}
    assert set(got) == set(inputs)
    for item, (mean, count, ok) in inputs.items():
        assert got[item][0] == pytest.approx(mean, rel=1e-9) and got[item][1:] == (count, ok), item


def test_realtime_aqi_carries_the_hours_wind(run: dict[str, Any]) -> None:
    [idx] = [i for i in run[INDICES.name] if i["index"] == "aqi_realtime" and i["station_id"] == AIR_ID and i["window_end"] == WIND_CHECK_END]
    dirs = np.radians([r["value"] for r in run["readings"] if r["station_id"] == AIR_ID and r["parameter"] == "wind_dir"
                       and WIND_CHECK_END - HOUR <= r["event_time"] < WIND_CHECK_END])
    s, c = np.sin(dirs).mean(), np.cos(dirs).mean()
    wind = idx["wind"]
    assert wind is not None and wind["minutes"] == 60 and wind["speed_ms"] == pytest.approx(3.0, abs=0.5)
    assert abs((wind["from_deg"] - math.degrees(math.atan2(s, c)) + 180) % 360 - 180) < 1e-9
    assert min(wind["from_deg"], 360 - wind["from_deg"]) < 1.0  # 350 and 10 degrees: from the north, not the south
    assert wind["steadiness"] == pytest.approx(math.hypot(s, c), rel=1e-9)
    assert all(i["wind"] is None for i in run[INDICES.name] if i["index"] != "aqi_realtime" or i["medium"] == "water")
