"""Results as jw.apportionment.v1 records (schemas/apportionment.v1.schema.json): the stream's shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from apportion.factors import Array, FactorModel
from apportion.transport import TransportResult
from apportion.water import WaterResult
from schemas.apportionment import Apportionment, FactorModelInfo, StationUsed
from schemas.network import Network, Station
from schemas.parameters import PARAMETERS


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


def factor_model_info(model: FactorModel, refit_every_h: int) -> FactorModelInfo:
    """What a source_factor record says about the model behind it: refit window, fit statistics, profiles."""
    fit = model.fit
    return {
        "refit_window_start": model.window_start,
        "refit_window_end": model.window_end,
        "refit_every_h": refit_every_h,
        "n_factors": len(model.ids),
        "species": list(model.species),
        "n_rows": model.n_rows,
        "q": round(fit.Q, 6),
        "q_robust": round(fit.Q_robust, 6),
        "q_exp": round(fit.Q_exp, 6),
        "q_ratio": round(fit.Q / fit.Q_exp, 6),
        "frac_scaled_over_3": round(model.frac_scaled_over_3, 6),
        "converged": fit.converged,
        "error_fraction": model.error_fraction,
        "profiles": {k: {s: round(float(model.explained[i, j]), 6) for j, s in enumerate(model.species)} for i, k in enumerate(model.ids)},
    }


def factor_records(model: FactorModel, stations: Sequence[Station], X: Array, G: Array, start_ms: int, end_ms: int,
                   refit_every_h: int) -> list[Apportionment]:
    """One record per species with data: the region's hour [start_ms, end_ms) split over the model's factors.

    X (b, m) are the projected stations' hourly means (NaN = not valid), G (b, p) their contributions;
    a species' amounts are the mean over the stations that measured it.
    """
    modelled = G[:, :, None] * model.F[None, :, :]  # (station, factor, species)
    out: list[Apportionment] = []
    for j, species in enumerate(model.species):
        rows = np.flatnonzero(np.isfinite(X[:, j]))
        if rows.size == 0:
            continue
        parts = modelled[rows, :, j].mean(axis=0)
        total = float(parts.sum())
        residual = X[rows, j] - modelled[rows, :, j].sum(axis=1)
        out.append({
            "schema": "jw.apportionment.v1",
            "record_id": f"source_factor:{model.region}:{species}:{start_ms}",
            "kind": "source_factor",
            "scope": "region",
            "receptor": model.region,
            "region": model.region,
            "pollutant": species,
            "window_start": start_ms,
            "window_end": end_ms,
            "basis": "share",
            "unit": PARAMETERS[species].unit,
            "shares": {k: round(float(parts[i]) / total, 6) if total > 0 else 0.0 for i, k in enumerate(model.ids)},
            "uncertainty": {},
            "amounts": {k: round(float(parts[i]), 6) for i, k in enumerate(model.ids)},
            "fit": {"r2": None, "rmse": round(float(np.sqrt(np.mean(residual**2))), 6), "n_steps": int(rows.size)},
            "origin_region": None,
            "affected_regions": [],
            "provenance": {
                "model_version": model.fit.model_version,
                "stations": [{"station_id": stations[i].id, "region": stations[i].region, "lag_h": 0.0, "distance_km": 0.0,
                              "bearing_deg": None, "wind_sector": None} for i in rows],
                "wind_from_deg": None,
                "wind_speed_ms": None,
                "seed": model.seed,
                "factor_model": factor_model_info(model, refit_every_h),
            },
        })
    return out
