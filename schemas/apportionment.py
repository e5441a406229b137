"""Typed view of schemas/apportionment.v1.schema.json (jw.apportionment; validated by schemas/models.py).

The JSON Schema is the contract; tests/unit/test_apportion_schema.py checks these
TypedDicts against it field by field, nested objects included.
(No `from __future__ import annotations`: it hides Required[] from TypedDict in 3.11.)
"""

from typing import Literal, NotRequired, TypedDict


class ShareUncertainty(TypedDict):
    sd: float
    lo: float
    hi: float


class Fit(TypedDict):
    r2: float | None
    rmse: float | None
    n_steps: int


class StationUsed(TypedDict):
    station_id: str
    region: str
    lag_h: float
    distance_km: float
    bearing_deg: float | None
    wind_sector: str | None


class FactorModelInfo(TypedDict):
    refit_window_start: int
    refit_window_end: int
    refit_every_h: int
    n_factors: int
    species: list[str]
    n_rows: int
    q: float
    q_robust: float
    q_exp: float
    q_ratio: float
    frac_scaled_over_3: float
    converged: bool
    error_fraction: float
    profiles: dict[str, dict[str, float]]


class Provenance(TypedDict):
    model_version: str
    stations: list[StationUsed]
    wind_from_deg: float | None
    wind_speed_ms: float | None
    seed: int
    factor_model: NotRequired[FactorModelInfo]  # source_factor records only


class Apportionment(TypedDict):
    schema: Literal["jw.apportionment.v1"]
    record_id: str
    kind: Literal["transport", "water_reach", "source_factor"]
    scope: Literal["station", "region", "reach"]
    receptor: str
    region: str
    pollutant: str
    window_start: int
    window_end: int
    basis: Literal["share", "load", "concentration"]
    unit: str
    shares: dict[str, float]
    uncertainty: dict[str, ShareUncertainty]
    amounts: dict[str, float]
    fit: Fit
    origin_region: str | None
    affected_regions: list[str]
    provenance: Provenance
