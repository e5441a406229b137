"""Results as jw.apportionment.v1 records (schemas/apportionment.v1.schema.json): the stream's shape."""

from __future__ import annotations

from apportion.transport import TransportResult
from apportion.water import WaterResult
from schemas.apportionment import Apportionment, StationUsed
from schemas.network import Network


def _window_ms(start_ms: int, step_ms: int, t0: int, t1: int) -> tuple[int, int]:
    return start_ms + t0 * step_ms, start_ms + t1 * step_ms


def transport_record(result: TransportResult, pollutant: str, start_ms: int, step_ms: int, seed: int,
                     scope: str = "station") -> Apportionment:
    """One receptor's (scope 'station') or region's (scope 'region', from combine_region) window."""
    w0, w1 = _window_ms(start_ms, step_ms, result.t0, result.t1)
    stations: list[StationUsed] = [
        {"station_id": u.station_id, "region": u.region, "lag_h": u.lag_h, "distance_km": u.distance_km,
         "bearing_deg": u.bearing_deg, "wind_sector": u.wind_sector}
        for u in result.stations_used
    ]
    return {
        "schema": "jw.apportionment.v1",
        "record_id": f"transport:{result.receptor}:{pollutant}:{w0}",
        "kind": "transport",
        "scope": "region" if scope == "region" else "station",
        "receptor": result.receptor,
        "region": result.region,
        "pollutant": pollutant,
        "window_start": w0,
        "window_end": w1,
        "basis": "share",
        "unit": "1",
        "shares": {k: round(v, 6) for k, v in result.shares.items()},
        "uncertainty": {k: {"sd": round(result.share_sd[k], 6), "lo": round(result.share_interval[k][0], 6),
                            "hi": round(result.share_interval[k][1], 6)} for k in result.shares},
        "amounts": {k: round(v * result.mean_conc, 6) for k, v in result.shares.items()},
        "fit": {"r2": round(result.r2, 6), "rmse": round(result.rmse, 6), "n_steps": result.n_steps},
        "origin_region": result.origin_region,
        "affected_regions": list(result.affected_regions),
        "provenance": {"model_version": result.model_version, "stations": stations, "wind_from_deg": result.wind_from_deg,
                       "wind_speed_ms": result.wind_speed_ms, "seed": seed},
    }


def water_records(result: WaterResult, network: Network, start_ms: int, step_ms: int) -> list[Apportionment]:
    """One record per reach: its addition, which region is responsible, and the sections it used."""
    w0, w1 = _window_ms(start_ms, step_ms, result.t0, result.t1)
    out: list[Apportionment] = []
    for reach in result.reaches:
        up, down = network.stations[reach.upstream], network.stations[reach.downstream]
        assert up.river_km is not None and down.river_km is not None
        responsible = max(reach.regions, key=lambda r: reach.regions[r])
        affected = [down.region] if down.region != up.region else []
        out.append({
            "schema": "jw.apportionment.v1",
            "record_id": f"water_reach:{up.id}>{down.id}:{result.parameter}:{w0}",
            "kind": "water_reach",
            "scope": "reach",
            "receptor": f"{up.id}>{down.id}",
            "region": up.region,
            "pollutant": result.parameter,
            "window_start": w0,
            "window_end": w1,
            "basis": result.basis,
            "unit": result.unit,
            "shares": dict(reach.regions),
            "uncertainty": {},
            "amounts": {r: round(f * reach.addition, 6) for r, f in reach.regions.items()} if reach.n_steps else {},
            "fit": {"r2": None, "rmse": None, "n_steps": reach.n_steps},
            "origin_region": responsible if reach.n_steps and reach.addition > 0 else None,
            "affected_regions": affected if reach.n_steps and reach.addition > 0 else [],
            "provenance": {
                "model_version": result.model_version,
                "stations": [{"station_id": s.id, "region": s.region, "lag_h": lag, "distance_km": round(down.river_km - up.river_km, 3),
                              "bearing_deg": None, "wind_sector": None} for s, lag in ((up, reach.travel_h), (down, 0.0))],
                "wind_from_deg": None,
                "wind_speed_ms": None,
                "seed": 0,
            },
        })
    return out
