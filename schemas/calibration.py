"""Typed Python views of the calibration JSON Schemas (validated by schemas/models.py).

calibration_model.v1 (jw.control.calibration) and calibration_proposal.v1
(jw.calibration.proposals). The JSON Schema files are the contract; the
TypedDicts mirror them, nested objects included, and
tests/unit/test_calibration_schemas.py checks they agree field by field.
(No `from __future__ import annotations`, as in schemas/models.py.)
"""

from typing import Any, Literal, TypedDict

ModelType = Literal["linear", "multilinear", "polynomial", "epa_purpleair_2021", "epa_purpleair_2022", "unit_conversion", "chain"]


class ModelEntry(TypedDict):
    model_id: str
    version: int
    effective_from: int
    type: ModelType
    coefficients: dict[str, Any]
    description: str


class ModelStep(TypedDict):
    type: ModelType
    coefficients: dict[str, Any]


class CalibrationModelMessage(TypedDict):
    schema: Literal["jw.calibration_model.v1"]
    sensor: str
    station_id: str
    parameter: str
    registry_id: str
    models: list[ModelEntry]


class ModelRef(TypedDict):
    model_id: str
    version: int


class Fit(TypedDict):
    method: Literal["ols", "theil_sen"]
    n: int
    r2: float
    residual_sd: float
    slope: float
    intercept: float


class GainOffset(TypedDict):
    gain: float
    offset: float


class CalibrationProposal(TypedDict):
    schema: Literal["jw.calibration_proposal.v1"]
    proposal_id: str
    sensor: str
    station_id: str
    parameter: str
    reference_station_id: str
    window_start: int
    window_end: int
    replaces: ModelRef | None
    proposed: ModelEntry
    fit: Fit
    drift: GainOffset
    thresholds: GainOffset
    reason: str


TYPED: dict[str, type] = {
    "calibration_model": CalibrationModelMessage,
    "calibration_proposal": CalibrationProposal,
}
# Nested objects: (schema name, $defs entry) -> the TypedDict that mirrors it.
TYPED_DEFS: dict[tuple[str, str], type] = {
    ("calibration_model", "model_entry"): ModelEntry,
    ("calibration_model", "model_step"): ModelStep,
    ("calibration_proposal", "model_ref"): ModelRef,
    ("calibration_proposal", "fit"): Fit,
    ("calibration_proposal", "gain_offset"): GainOffset,
}
