"""Calibration and QC in the Flink job, on the real stack (Kafka + embedded Flink).

Three hours of minute readings of one air station go straight to jw.readings.raw.
The calibration registry on jw.control.calibration lists three of its sensors:
pm25 (EPA PurpleAir 2021, then a linear version effective from minute 100, published
while the job runs), no2 (multilinear in rh and temp) and o3 (linear, effective only
from minute 30: calibration missing before). so2 is unlisted (passed as measured).
The data carry a pm25 spike, a stuck so2 sensor, an o3 value out of range and no2
readings with the HJ 212 flag F.

Checked against tests/quality_reference.py (the library, from the readings):
every jw.station_minute.v1 record (calibrated value, model, QC mask, covariates);
the mid-stream version changes only minutes from its effective_from on; the clock
hour's mean is that of the calibrated minutes no excluding flag marks; and a replay
of the same input (registry complete from the start) gives identical records.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from calibration.qc import QcFlag
from calibration.registry import parse_registry
from jointwatch.settings import Settings
from jointwatch.stack.flink import start_embedded_job
from schemas.models import validation_errors
from schemas.parameters import PARAMETERS
from schemas.topics import CALIBRATION, READINGS_RAW, STATION_CLOCK_HOURS, STATION_MINUTES, namespaced
from tests.conftest import RunningStack
from tests.integration.kafka_read import read_until
from tests.quality_reference import station_minutes

pytestmark = [pytest.mark.integration, pytest.mark.flink]

MINUTE, HOUR = 60_000, 3_600_000
START = int(datetime(2026, 11, 23, 6, tzinfo=timezone.utc).timestamp() * 1000)
MINUTES, TAIL = 180, 10
SWITCH = 100  # minute the second pm25 version takes effect
STATION = "n-a03"
PARAMS = ("pm25", "no2", "o3", "so2", "rh", "temp")


def iso(minute: int) -> str:
    return datetime.fromtimestamp((START + minute * MINUTE) / 1000, timezone.utc).isoformat()


def registry_doc(with_switch: bool) -> dict[str, Any]:
    pm25 = [{"model_id": "epa-2021", "version": 1, "effective_from": "2026-01-01T00:00:00+00:00", "type": "epa_purpleair_2021"}]
    if with_switch:
        pm25.append({"model_id": "colocation-b", "version": 2, "effective_from": iso(SWITCH), "type": "linear",
                     "coefficients": {"gain": 0.8, "offset": 2.0}})
    return {"version": 1, "registry_id": "test", "unlisted_sensors": "pass", "sensors": [
        {"station_id": STATION, "parameter": "pm25", "models": pm25},
        {"station_id": STATION, "parameter": "no2", "models": [
            {"model_id": "ml", "version": 1, "effective_from": "2026-01-01T00:00:00+00:00", "type": "multilinear",
             "coefficients": {"gain": 1.05, "offset": -2.0, "covariates": {"rh": -0.08, "temp": 0.15}}}]},
        {"station_id": STATION, "parameter": "o3", "models": [
            {"model_id": "lin", "version": 1, "effective_from": iso(30), "type": "linear", "coefficients": {"gain": 0.9, "offset": 1.0}}]},
    ]}


def value(p: str, m: int, rng: np.random.Generator) -> float:
    if p == "pm25" and m == 60:
        return 700.0  # spike (and a rate of change no PM monitor shows)
    if p == "so2" and 100 <= m < 140:
        return 7.0  # stuck: 30 equal values in a row make a flat line
    if p == "o3" and m == 150:
        return 1500.0  # beyond any O3 analyser's range
    base = {"pm25": 30 + 10 * math.sin(m / 25), "no2": 40 + 8 * math.cos(m / 30), "o3": 60 + m / 6, "so2": 9.0,
            "rh": 70 + 10 * math.sin(m / 40), "temp": 8 + m / 60}[p]
    return round(base + float(rng.normal(0, 0.5)), 3)


def readings(first: int, last: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(first)
    out = []
    for m in range(first, last):
        for p in PARAMS:
            t = START + m * MINUTE + 5_000 + PARAMS.index(p) * 1_000
            out.append({
                "schema": "jw.reading.v2", "reading_id": f"{STATION}/{p}/{t}", "station_id": STATION, "region": "north", "medium": "air",
                "parameter": p, "value": value(p, m, rng), "unit": PARAMETERS[p].unit, "event_time": t, "received_at": t + 500,
                "device_time": str(t), "time_basis": "epoch_ms", "seq": m, "clock_corrected": False, "clock_offset_ms": 0,
                "status": "F" if p == "no2" and 70 <= m < 75 else "N",
            })
    return out


def produce(s: Settings, docs: list[dict[str, Any]]) -> None:
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 20})
    for d in docs:
        topic, key = (CALIBRATION, d["sensor"]) if "sensor" in d else (READINGS_RAW, d["station_id"])
        producer.produce(namespaced(topic, s.namespace), key=key, value=json.dumps(d))
    assert producer.flush(30) == 0


def registry_messages(with_switch: bool) -> list[dict[str, Any]]:
    return [dict(m) for m in parse_registry(registry_doc(with_switch), "test").messages()]


def minutes_through(s: Settings, last_end: int, timeout_s: float = 180) -> list[dict[str, Any]]:
    """The station minutes once every minute ending from START + 1 min to `last_end` is there (or the timeout)."""
    topic, want = namespaced(STATION_MINUTES, s.namespace), set(range(START + MINUTE, last_end + 1, MINUTE))
    got = read_until(s.kafka_bootstrap, [topic], lambda m: want <= {d["window_end"] for _, d in m}, timeout_s)
    return [d for _, d in got]


def run_job(s: Settings) -> Any:
    return start_embedded_job(s, "--startup-mode", "earliest-offset", "--idle-timeout", "5")


@pytest.fixture(scope="module")
def runs(stack: RunningStack) -> Iterator[dict[str, Any]]:
    live, replay = stack.isolated(), stack.isolated()
    first, second = readings(0, 90), readings(90, MINUTES + TAIL)
    # live: the second pm25 version is published while the job runs, before the minutes it covers arrive
    produce(live, [*registry_messages(False), *first])
    job = run_job(live)
    try:
        early = minutes_through(live, START + 80 * MINUTE)
        assert early, f"no station minutes; job log {job.log_file}:\n{job.tail()}"
        produce(live, registry_messages(True))
        time.sleep(3)  # the job's registry feed polls every 0.2 s
        produce(live, second)
        minutes = minutes_through(live, START + MINUTES * MINUTE)
        hours = read_until(live.kafka_bootstrap, [namespaced(STATION_CLOCK_HOURS, live.namespace)], lambda m: len(m) >= 3, 60)
    finally:
        job.stop()
    # replay: the same readings, the registry complete from the start
    produce(replay, [*registry_messages(True), *first, *second])
    job = run_job(replay)
    try:
        replayed = minutes_through(replay, START + MINUTES * MINUTE)
    finally:
        job.stop()
    yield {"minutes": minutes, "hours": [d for _, d in hours], "replayed": replayed,
           "reference": station_minutes(first + second, parse_registry(registry_doc(True), "test"))}


def by_minute(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for d in records:
        assert d["window_end"] not in out, f"minute ending {d['window_end']} emitted twice"
        out[d["window_end"]] = d
    return out


def test_every_minute_matches_the_library(runs: dict[str, Any]) -> None:
    got = by_minute(runs["minutes"])
    ref = runs["reference"].loc[STATION]
    ends = [e for e in ref.index if e <= START + MINUTES * MINUTE]
    assert sorted(e for e in got if e <= ends[-1]) == ends, "one record per minute with readings"
    for end in ends:
        d, want = got[end], ref.loc[end]
        assert validation_errors("station_minute", d) == []
        for c in ("rh", "temp"):
            assert d[c] == pytest.approx(want[c], abs=1e-9)
        for p in ("pm25", "no2", "o3", "so2"):
            where = f"minute {(end - START) // MINUTE - 1} {p}"
            assert d[f"{p}_qc"] == want[f"{p}_qc"], f"{where}: qc {d[f'{p}_qc']} vs {want[f'{p}_qc']}"
            assert d[f"{p}_model"] == want[f"{p}_model"], where
            for col in (f"{p}_raw", p):
                if np.isnan(want[col]):
                    assert d[col] is None, f"{where}: {col}"
                else:
                    assert d[col] == pytest.approx(want[col], rel=1e-12, abs=1e-9), f"{where}: {col}"


def test_mid_stream_version_applies_from_its_effective_from_only(runs: dict[str, Any]) -> None:
    got = by_minute(runs["minutes"])
    models = {(e - START) // MINUTE - 1: d["pm25_model"] for e, d in got.items() if d["pm25_raw"] is not None}
    # minutes 80..99 were calibrated after version 2 was published: still version 1, their time is before its effective_from
    assert {models[m] for m in range(0, SWITCH)} == {"epa-2021@1"}
    assert {models[m] for m in range(SWITCH, MINUTES)} == {"colocation-b@2"}
    d = got[START + (SWITCH + 1) * MINUTE]
    assert d["pm25"] == pytest.approx(0.8 * d["pm25_raw"] + 2.0)


def test_flags_of_the_injected_faults(runs: dict[str, Any]) -> None:
    got = {(e - START) // MINUTE - 1: d for e, d in by_minute(runs["minutes"]).items()}
    assert got[60]["pm25_qc"] & QcFlag.SPIKE and got[60]["pm25_qc"] & QcFlag.RATE
    assert got[150]["o3_qc"] & QcFlag.RANGE
    assert got[72]["no2_qc"] == QcFlag.STATUS and got[72]["no2_raw"] is None
    assert got[10]["o3_qc"] == QcFlag.CALIBRATION_MISSING and got[10]["o3"] is None and got[10]["o3_raw"] is not None
    assert got[40]["o3_qc"] == 0 and got[40]["o3_model"] == "lin@1"
    assert [m for m in range(100, 140) if got[m]["so2_qc"] & QcFlag.FLATLINE] == list(range(129, 140))
    assert got[20]["so2_model"] is None and got[20]["so2"] == got[20]["so2_raw"]  # unlisted: passed as measured


def test_clock_hour_averages_the_calibrated_minutes_it_may_use(runs: dict[str, Any]) -> None:
    ref = runs["reference"].loc[STATION]
    hour = next(d for d in runs["hours"] if d["station_id"] == STATION and d["window_end"] == START + 2 * HOUR)
    rows = ref[(ref.index > START + HOUR) & (ref.index <= START + 2 * HOUR)]
    for p in ("pm25", "no2", "o3"):
        ok = rows[rows[f"{p}_ok"]]
        assert hour[f"{p}_minutes"] == len(ok)
        assert hour[f"{p}_mean"] == pytest.approx(ok[f"{p}_q"].mean(), rel=1e-12)
    assert hour["pm25_minutes"] == 59  # the spike is left out
    assert hour["no2_minutes"] == 55  # five minutes flagged F


def test_replay_gives_identical_records(runs: dict[str, Any]) -> None:
    live, replayed = by_minute(runs["minutes"]), by_minute(runs["replayed"])
    common = [e for e in live if e <= START + MINUTES * MINUTE]
    assert sorted(replayed.keys() & set(common)) == sorted(common)
    assert all(replayed[e] == live[e] for e in common)
