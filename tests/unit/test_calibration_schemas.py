"""The TypedDicts in schemas/calibration.py mirror the calibration JSON Schemas field by
field, nested objects ($defs) included; the topics are declared."""

from __future__ import annotations

import typing

import pytest

from schemas.calibration import TYPED, TYPED_DEFS
from schemas.models import schema, validation_errors
from schemas.topics import ALL_TOPICS, CALIBRATION, CALIBRATION_PROPOSALS


def assert_mirrors(typed: type, obj: dict) -> None:
    fields = set(obj["properties"])
    assert set(typing.get_type_hints(typed)) == fields
    required = set(obj.get("required", []))
    assert set(typed.__required_keys__) == required
    assert set(typed.__optional_keys__) == fields - required
    assert obj.get("additionalProperties") is False  # a field the TypedDict lacks cannot slip through


@pytest.mark.parametrize("name", sorted(TYPED))
def test_message_typed_dict_matches_json_schema(name: str) -> None:
    assert_mirrors(TYPED[name], schema(name))


@pytest.mark.parametrize(("name", "definition"), sorted(TYPED_DEFS))
def test_nested_typed_dicts_match_their_defs(name: str, definition: str) -> None:
    assert_mirrors(TYPED_DEFS[(name, definition)], schema(name)["$defs"][definition])


def test_every_object_def_has_a_typed_mirror() -> None:
    for name in TYPED:
        objects = {k for k, v in schema(name).get("$defs", {}).items() if v.get("type") == "object"}
        assert objects == {d for n, d in TYPED_DEFS if n == name}


def test_coefficients_are_checked_per_model_type() -> None:
    entry = {"model_id": "a", "version": 1, "effective_from": 1, "description": ""}
    msg = {"schema": "jw.calibration_model.v1", "sensor": "n-a01/pm25", "station_id": "n-a01", "parameter": "pm25", "registry_id": "r"}
    ok = [{**entry, "type": "linear", "coefficients": {"gain": 1.0, "offset": 0.0}},
          {**entry, "type": "epa_purpleair_2022", "coefficients": {}}]
    assert validation_errors("calibration_model", {**msg, "models": ok}) == []
    bad = [{**entry, "type": "epa_purpleair_2021", "coefficients": {"gain": 1.0}},
           {**entry, "type": "polynomial", "coefficients": {"coefficients": []}}]
    errors = validation_errors("calibration_model", {**msg, "models": bad})
    assert any(e.startswith("models/0/coefficients:") for e in errors)
    assert any(e.startswith("models/1/coefficients/coefficients:") for e in errors)


def test_topics() -> None:
    assert CALIBRATION in ALL_TOPICS and CALIBRATION_PROPOSALS in ALL_TOPICS
    assert CALIBRATION.compacted and CALIBRATION.key == "sensor" and CALIBRATION.name == "jw.control.calibration"
    assert not CALIBRATION_PROPOSALS.compacted
