"""Calibration + QC library benchmark (pure numpy, no services; this machine: 2 cores).

Builds a registry for every air station of config/network.yaml (PM2.5: EPA 2021 then
EPA 2022 from day 3; PM10: polynomial; NO2: two linear versions; O3: multilinear on
rh and temp), generates N readings (1-minute cadence per sensor, ~6 days for 1M, random
values, rh/temp covariates, 1% non-N device status), and times each stage:
  1. sensor codes from string station ids and parameters,
  2. as-of lookup of the version in effect at each event time,
  3. calibrate (lookup + every model applied to its readings),
  4. QC flags of every series (range, spike, flat line, rate, status, calibration missing).
Prints readings/s per stage and end to end. Run: uv run python -m bench.calibration_bench [--readings N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

import numpy as np

from calibration.qc import QC_LIMITS, qc_flags, spike_flags
from calibration.registry import Registry, parse_registry
from jointwatch.settings import REPO_ROOT
from schemas.network import load_network

DAY_MS = 86_400_000
START_MS = int(datetime(2026, 11, 1, tzinfo=timezone.utc).timestamp() * 1000)
PARAMETERS = ("pm25", "pm10", "no2", "o3")
T = TypeVar("T")


def build_registry(stations: list[str]) -> Registry:
    def entry(model_id: str, version: int, day: int, kind: str, coefficients: dict) -> dict:
        iso = datetime.fromtimestamp((START_MS + day * DAY_MS) / 1000, tz=timezone.utc).isoformat()
        return {"model_id": model_id, "version": version, "effective_from": iso, "type": kind, "coefficients": coefficients}

    sensors = []
    for s in stations:
        sensors += [
            {"station_id": s, "parameter": "pm25", "models": [entry("epa21", 1, -30, "epa_purpleair_2021", {}),
                                                              entry("epa22", 2, 3, "epa_purpleair_2022", {})]},
            {"station_id": s, "parameter": "pm10", "models": [entry("poly", 1, -30, "polynomial", {"coefficients": [0.8, 0.62, 0.0011]})]},
            {"station_id": s, "parameter": "no2", "models": [entry("lin-a", 1, -30, "linear", {"gain": 0.92, "offset": -3.1}),
                                                             entry("lin-b", 2, 4, "linear", {"gain": 0.87, "offset": -2.4})]},
            {"station_id": s, "parameter": "o3", "models": [entry("ml", 1, -30, "multilinear",
                                                                  {"gain": 1.05, "offset": -2.0, "covariates": {"rh": -0.08, "temp": 0.15}})]},
        ]
    return parse_registry({"version": 1, "registry_id": "bench", "unlisted_sensors": "pass", "sensors": sensors}, "<bench>")


def timed(label: str, n: int, fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"{label:<44} {dt * 1000:9.1f} ms  {n / dt:14,.0f} readings/s")
    return out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=1_000_000, help="number of readings [1,000,000]")
    ap.add_argument("--seed", type=int, default=1, help="random seed")
    args = ap.parse_args()

    stations = sorted(s.id for s in load_network(REPO_ROOT / "config" / "network.yaml").stations.values() if s.medium == "air")
    registry = build_registry(stations)
    rng = np.random.default_rng(args.seed)
    n_series = len(stations) * len(PARAMETERS)
    per_series = -(-args.readings // n_series)
    n = n_series * per_series
    # readings grouped by series (station, parameter), each series 1 reading per minute: the order QC needs
    station = np.repeat(np.array(stations), len(PARAMETERS) * per_series)
    parameter = np.tile(np.repeat(np.array(PARAMETERS), per_series), len(stations))
    series = np.repeat(np.arange(n_series), per_series)
    t = START_MS + np.tile(np.arange(per_series, dtype=np.int64) * 60_000, n_series)
    raw = rng.gamma(2.0, 15.0, n)
    cov = {"rh": rng.uniform(20, 95, n), "temp": rng.uniform(-5, 30, n)}
    status = np.where(rng.random(n) < 0.01, "M", "N")
    print(f"{n:,} readings: {len(stations)} stations x {len(PARAMETERS)} parameters, {per_series:,} per series "
          f"({per_series / 1440:.1f} days at 1/min); registry: {len(registry.sensors)} sensors, {len(registry.entries)} versions")

    codes, t_codes = timed("1. sensor codes (string ids -> registry codes)", n, lambda: registry.sensor_codes(station, parameter))
    _, t_lookup = timed("2. as-of lookup (searchsorted)", n, lambda: registry.lookup(codes, t))
    cal, t_cal = timed("3. calibrate (lookup + models)", n, lambda: registry.calibrate(codes, t, raw, cov))

    def qc() -> np.ndarray:
        flags = np.zeros(n, dtype=np.uint16)
        for p in PARAMETERS:  # one vectorised call per parameter (its limits), over all its series
            idx = np.flatnonzero(parameter == p)
            flags[idx] = qc_flags(p, cal.value[idx], t[idx], status[idx], cal.missing[idx], series=series[idx])
        return flags

    flags, t_qc = timed("4. QC flags (all tests, all series)", n, qc)
    pm25 = parameter == "pm25"
    lim = QC_LIMITS["pm25"]
    timed("   of which the spike test (PM2.5 only)", int(pm25.sum()),
          lambda: spike_flags(cal.value[pm25], lim.spike_window, lim.spike_z, lim.spike_min_scale, series[pm25]))
    total = t_codes + t_cal + t_qc
    print(f"{'end to end (1 + 3 + 4)':<44} {total * 1000:9.1f} ms  {n / total:14,.0f} readings/s")
    print(f"check: calibrated {np.count_nonzero(~cal.missing):,}, missing {np.count_nonzero(cal.missing):,}, "
          f"flagged {np.count_nonzero(flags):,}, versions used {sorted(set(cal.version.tolist()))}")


if __name__ == "__main__":
    main()
