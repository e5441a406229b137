"""schemas/apportionment.py mirrors apportionment.v1.schema.json field by field, nested objects included."""

from __future__ import annotations

import typing
from typing import Any

import pytest

from schemas.apportionment import Apportionment, FactorModelInfo, Fit, Provenance, ShareUncertainty, StationUsed
from schemas.models import schema, validation_errors


def _at(path: tuple[str, ...]) -> dict[str, Any]:
    node = schema("apportionment")
    for key in path:
        node = node[key]
    return node


CASES = [
    (Apportionment, ()),
    (ShareUncertainty, ("properties", "uncertainty", "additionalProperties")),
    (Fit, ("properties", "fit")),
    (Provenance, ("properties", "provenance")),
    (StationUsed, ("properties", "provenance", "properties", "stations", "items")),
    (FactorModelInfo, ("properties", "provenance", "properties", "factor_model")),
]


@pytest.mark.parametrize(("typed", "path"), CASES, ids=[c[0].__name__ for c in CASES])
def test_typed_dict_matches_json_schema(typed: type, path: tuple[str, ...]) -> None:
    node = _at(path)
    assert node["type"] == "object" and node["additionalProperties"] is False
    fields = set(typing.get_type_hints(typed))
    assert fields == set(node["properties"])
    assert set(typed.__required_keys__) == set(node["required"])  # type: ignore[attr-defined]
    assert set(typed.__optional_keys__) == fields - set(node["required"])  # type: ignore[attr-defined]


def test_nullable_fields_agree() -> None:
    """A field is `X | None` in Python exactly where the schema allows null."""
    for typed, path in CASES:
        node = _at(path)
        hints = typing.get_type_hints(typed)
        for name, spec in node["properties"].items():
            schema_null = "null" in spec.get("type", []) if isinstance(spec.get("type"), list) else False
            python_null = type(None) in typing.get_args(hints[name])
            assert schema_null == python_null, (typed.__name__, name)


def test_a_wrong_record_names_its_errors() -> None:
    errors = validation_errors("apportionment", {"schema": "jw.apportionment.v1", "kind": "smoke"})
    assert any(e.startswith("kind:") for e in errors)
    assert any("'receptor' is a required property" in e for e in errors)
