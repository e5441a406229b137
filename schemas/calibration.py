"""Typed Python views of the calibration JSON Schemas, and their validators.

calibration_model.v1 (jw.control.calibration) and calibration_proposal.v1
(jw.calibration.proposals). The JSON Schema files are the contract; the
TypedDicts mirror them, nested objects included, and
tests/unit/test_calibration_schemas.py checks they agree field by field.
(No `from __future__ import annotations`, as in schemas/models.py.)
"""

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypedDict

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent
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


SCHEMA_FILES: dict[str, str] = {
    "calibration_model": "calibration_model.v1.schema.json",
    "calibration_proposal": "calibration_proposal.v1.schema.json",
}
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


@cache
def schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / SCHEMA_FILES[name]).read_text())


@cache
def validator(name: str) -> Draft202012Validator:
    # The proposal refers to the model schema's entry by $id: both are registered.
    resources = Registry().with_resources((schema(n)["$id"], Resource.from_contents(schema(n))) for n in SCHEMA_FILES)
    return Draft202012Validator(schema(name), registry=resources)


def validation_errors(name: str, doc: Any) -> list[str]:
    """Every violation of the named schema, each as 'path: message' (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in err.absolute_path) or '<root>'}: {err.message}"
        for err in sorted(validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]
