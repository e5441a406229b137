"""Valid sample records for tests, one factory per shape (keys overridable)."""

from __future__ import annotations

from typing import Any

from jointwatch.settings import REPO_ROOT
from schemas.models import Alert, validation_errors
from schemas.network import load_network

NETWORK = load_network(REPO_ROOT / "config" / "network.yaml")
M = 60_000
T0 = 1_784_000_000_000 - 1_784_000_000_000 % 3_600_000  # a whole hour (2026-07-13)


def sample_alert(**over: Any) -> Alert:
    """A red escalation of n-a03's real-time AQI, led by north with central assisting."""
    end = over.get("window_end", 3_600_000)
    alert: dict[str, Any] = {
        "schema": "jw.alert.v2", "alert_id": "a-1", "episode_id": "a-0", "action": "escalate", "scope": "station",
        "subject": "n-a03", "station_id": "n-a03", "region": "north", "origin_region": "north",
        "affected_regions": ["central"], "kind": "air", "indicator": "aqi", "tier": "red", "previous_tier": "yellow",
        "value": 212.0, "threshold": 200.0, "reason": "aqi 212 > 200 for 61 obs / 120 min",
        "window_start": end - 3_600_000, "window_end": end, "condition_since": end - 7_200_000, "completeness": 1.0,
        "standard": "HJ 633-2012", "inputs": {"index_id": "i-1"}, "rule_id": "jw-tiers/north/air/aqi",
        "rule_set_id": "jw-tiers", "rule_version": 1,
    }
    alert.update(over)
    problems = validation_errors("alert", alert)
    assert problems == [], problems
    return alert  # type: ignore[return-value]


def aqi_index(station: str, minute: int, aqi: int | None, wind_from: float | None = None, t0: int = T0) -> dict[str, Any]:
    """The real-time AQI of `station` for the rolling hour ending `minute` minutes after t0 (one pollutant)."""
    s = NETWORK.stations[station]
    end = t0 + minute * M
    return {
        "schema": "jw.index.v2", "index_id": f"{station}-{minute}", "station_id": station, "region": s.region, "medium": "air",
        "index": "aqi_realtime", "standard_id": "HJ 633-2012", "window_start": end - 60 * M, "window_end": end,
        "value": aqi, "label": None if aqi is None else "x", "primary": [] if aqi is None else ["pm25"],
        "insufficient_data": aqi is None, "reason": "no data" if aqi is None else None,
        "inputs": [] if aqi is None else [{"parameter": "pm25", "averaging": "1h", "mean": float(aqi), "count": 60, "count_unit": "minutes", "completeness": 1.0, "valid": True}],
        "detail": None,
        "wind": None if wind_from is None else {"from_deg": wind_from, "speed_ms": 4.0, "steadiness": 0.95, "minutes": 60},
    }


def water_rt_index(station: str, minute: int, nh3n: float | None, t0: int = T0) -> dict[str, Any]:
    """The real-time water index of `station` (NH3-N only) for the rolling hour ending `minute` minutes after t0."""
    s = NETWORK.stations[station]
    end = t0 + minute * M
    inputs = [] if nh3n is None else [{"parameter": "nh3n", "averaging": "1h", "mean": nh3n, "count": 60, "count_unit": "minutes", "completeness": 1.0, "valid": True}]
    return {
        "schema": "jw.index.v2", "index_id": f"{station}-{minute}", "station_id": station, "region": s.region, "medium": "water",
        "index": "water_class_realtime", "standard_id": "GB 3838-2002", "window_start": end - 60 * M, "window_end": end,
        "value": None if nh3n is None else 2, "label": None, "primary": [], "insufficient_data": nh3n is None,
        "reason": None, "inputs": inputs, "detail": None, "wind": None,
    }


def region_apportionment(region: str, window_end: int, origin: str | None, share: float = 0.0, pollutant: str = "pm25") -> dict[str, Any]:
    """A region-scope transport record of the 6 h to window_end: `share` from `origin` (None: all local)."""
    shares = {origin: share, "local": 1.0 - share} if origin else {"local": 1.0}
    rec = {
        "schema": "jw.apportionment.v1", "record_id": f"transport:{region}:{pollutant}:{window_end - 6 * 3_600_000}", "kind": "transport",
        "scope": "region", "receptor": region, "region": region, "pollutant": pollutant,
        "window_start": window_end - 6 * 3_600_000, "window_end": window_end, "basis": "share", "unit": "1",
        "shares": shares, "uncertainty": {}, "amounts": {}, "fit": {"r2": 0.9, "rmse": 1.0, "n_steps": 6},
        "origin_region": origin, "affected_regions": [region] if origin else [],
        "provenance": {"model_version": "transport-nnls/1", "stations": [], "wind_from_deg": None, "wind_speed_ms": None, "seed": 0},
    }
    problems = validation_errors("apportionment", rec)
    assert problems == [], problems
    return rec
