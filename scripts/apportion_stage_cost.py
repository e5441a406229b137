"""What the apportionment stage costs per hour on the demo network: `uv run python scripts/apportion_stage_cost.py`.

Feeds the simulator's scenario (every station and parameter, as clock-hour station records) through
apportion.stage.Apportioner with the stage's default StageConfig, one hour at a time, and prints the
solve time per hour (transport, river reaches, source factors; refit hours apart), then the restart
re-read: the cost of decoding, checking and offering one rolling station-hour record, times the records
a restart re-reads (stations x 60 per hour x history_h) for the default and a 30-day factor window.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

from apportion.stage import HOUR_MS, Apportioner, StageConfig
from connectors.kafka_io import decode_json, encode_json
from jobs.validity import AQI_POLLUTANTS, WATER_PARAMETERS
from jointwatch.settings import REPO_ROOT
from schemas.models import validation_errors
from schemas.network import Network, load_network
from simulator.scenario import P, ScenarioConfig, simulate


def day_docs(network: Network, config: ScenarioConfig, day: int) -> list[list[dict[str, Any]]]:
    """The day's clock-hour station records (jw.station_hour.v2), hour by hour."""
    block = simulate(network, config, day * 1440, 1440)
    minutes = block.measured.reshape(len(block.station_ids), 24, 60, -1)
    means = minutes.mean(axis=2)
    rad = np.radians(minutes[:, :, :, P["wind_dir"]])
    sin, cos = np.sin(rad).mean(axis=2), np.cos(rad).mean(axis=2)
    hours = []
    for k in range(24):
        end = config.start_ms + (day * 24 + k + 1) * HOUR_MS
        docs = []
        for i, sid in enumerate(block.station_ids):
            st = network.stations[sid]
            air = st.medium == "air"
            doc: dict[str, Any] = {"schema": "jw.station_hour.v2", "station_id": sid, "region": st.region, "medium": st.medium,
                                   "window_start": end - HOUR_MS, "window_end": end,
                                   "wind_speed_mean": float(means[i, k, P["wind_speed"]]) if air else None, "wind_speed_minutes": 60 if air else 0,
                                   "wind_dir_sin_mean": float(sin[i, k]) if air else None, "wind_dir_cos_mean": float(cos[i, k]) if air else None,
                                   "wind_dir_minutes": 60 if air else 0}
            for p in AQI_POLLUTANTS if air else WATER_PARAMETERS:
                doc[f"{p}_mean"], doc[f"{p}_minutes"] = float(means[i, k, P[p]]), 60
            docs.append(doc)
        hours.append(docs)
    return hours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=8, help="simulated days (the default factor window needs 6, refits at each UTC midnight)")
    args = parser.parse_args()
    network, scenario, config = load_network(REPO_ROOT / "config" / "network.yaml"), ScenarioConfig(), StageConfig()
    app = Apportioner(network, config)
    app.assign({0: 0}, [0])
    times: dict[str, list[float]] = {"plain": [], "refit": []}
    parts: dict[str, list[float]] = {}
    offset, records, sample = 0, 0, None
    for day in range(args.days):
        for docs in day_docs(network, scenario, day):
            for doc in docs:
                app.offer(0, offset, doc)  # type: ignore[arg-type]
                offset += 1
            sample = sample or docs
            out = app.advance()  # solves the hour before: this one's records moved the watermark past it
            if app.emitted_through is None or not out:
                continue
            records += len(out)
            refit = app.emitted_through % (config.refit_h * HOUR_MS) == 0 and any(r["kind"] == "source_factor" for r in out)
            times["refit" if refit else "plain"].append(app.last_solve_s)
            for part, seconds in app.last_solve_parts.items():
                parts.setdefault(f"{part} ({'refit' if refit else 'plain'} hours)", []).append(seconds)
    n_air = len(app.stations)
    print(f"demo network: {n_air} air stations in {len(app.regions)} regions, {len(app.sections)} river sections; "
          f"{args.days} simulated days, {records} records")
    for kind, values in times.items():
        if values:
            print(f"solve per hour, {kind:5s} hours: n={len(values):3d}  median {statistics.median(values) * 1000:7.1f} ms  "
                  f"p95 {np.percentile(values, 95) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms")
    for part, values in sorted(parts.items()):
        print(f"  {part:28s} median {statistics.median(values) * 1000:7.1f} ms  max {max(values) * 1000:7.1f} ms")

    # Restart re-read: every rolling record (60 per station and hour) is decoded, checked and offered.
    assert sample is not None
    raw = [encode_json({**d, "window_start": d["window_start"] + m * 60_000, "window_end": d["window_end"] + m * 60_000})
           for m in range(60) for d in sample]
    fresh = Apportioner(network, config)
    fresh.assign({0: 0}, [0])
    started = time.perf_counter()
    for k, value in enumerate(raw):
        doc = decode_json(value)
        assert not validation_errors("station_hour", doc)
        fresh.offer(0, k, doc)
    per_record = (time.perf_counter() - started) / len(raw)
    stations = len(network.stations)
    print(f"restart re-read: {per_record * 1e6:.0f} us per rolling record (decode, schema check, offer)")
    for label, cfg in (("default", config), ("30-day factor window", StageConfig(factor_window_h=720))):
        hours = Apportioner(network, cfg).history_h
        n = stations * 60 * hours
        print(f"  {label:22s} history {hours} h: {n:,} records, ~{n * per_record:.0f} s")


if __name__ == "__main__":
    main()
