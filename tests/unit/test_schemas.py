"""The TypedDicts in schemas/models.py mirror the JSON Schema files, field by field."""

from __future__ import annotations

import typing

import pytest

from schemas.models import SCHEMA_FILES, TYPED, schema, validation_errors
from schemas.topics import ALL_TOPICS, namespaced


def test_every_schema_file_has_a_typed_mirror() -> None:
    from schemas import calibration

    # calibration's and apportionment's mirrors are checked in their own tests (nested objects included)
    assert set(SCHEMA_FILES) == set(TYPED) | set(calibration.TYPED) | {"apportionment"}


@pytest.mark.parametrize("name", sorted(TYPED))
def test_typed_model_matches_json_schema(name: str) -> None:
    doc = schema(name)
    typed = TYPED[name]
    assert set(typing.get_type_hints(typed)) == set(doc["properties"])
    required = set(doc.get("required", []))
    assert set(typed.__required_keys__) == required
    assert set(typed.__optional_keys__) == set(doc["properties"]) - required


def test_validation_errors_name_the_path() -> None:
    errors = validation_errors("alert", {"schema": "jw.alert.v1", "tier": "purple"})
    assert any(e.startswith("tier:") for e in errors)
    assert any("'alert_id' is a required property" in e for e in errors)


def test_topic_names_are_unique_and_namespacing_is_a_prefix() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert namespaced(ALL_TOPICS[0], "replay-7") == f"replay-7.{ALL_TOPICS[0].name}"
    assert namespaced(ALL_TOPICS[0]) == ALL_TOPICS[0].name
