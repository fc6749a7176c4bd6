"""Each compatibility rule: does the reader accept everything the writer may send?"""

from __future__ import annotations

from typing import Any

import pytest

from jesus.compat.rules import accepts_all

OBJ = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
CLOSED = {**OBJ, "additionalProperties": False}

# (rule, writer, reader, expected kinds of findings: [] compatible)
CASES: list[tuple[str, Any, Any, list[str]]] = [
    ("identical", OBJ, OBJ, []),
    ("reader accepts anything", OBJ, True, []),
    ("writer sends nothing", False, OBJ, []),
    ("untyped writer, typed reader", True, {"type": "string"}, ["incompatible"]),
    ("integer fits number", {"type": "integer"}, {"type": "number"}, []),
    ("number does not fit integer", {"type": "number"}, {"type": "integer"}, ["incompatible"]),
    ("narrower type set", {"type": "string"}, {"type": ["string", "null"]}, []),
    ("wider type set", {"type": ["string", "null"]}, {"type": "string"}, ["incompatible"]),
    ("enum within enum", {"enum": ["a"]}, {"enum": ["a", "b"]}, []),
    ("enum value added by writer", {"enum": ["a", "c"]}, {"enum": ["a", "b"]}, ["incompatible"]),
    (
        "free string into enum",
        {"type": "string"},
        {"type": "string", "enum": ["a"]},
        ["incompatible"],
    ),
    ("const into enum", {"const": "a"}, {"enum": ["a", "b"]}, []),
    (
        "required field dropped by writer",
        {"type": "object", "properties": {"id": {"type": "integer"}}},
        OBJ,
        ["incompatible"],
    ),
    (
        "reader requires less",
        OBJ,
        {"type": "object", "properties": {"id": {"type": "integer"}}},
        [],
    ),
    (
        "field type narrowed by reader",
        {**OBJ, "properties": {"id": {"type": "number"}}},
        OBJ,
        ["incompatible"],
    ),
    ("closed writer into closed reader", CLOSED, CLOSED, []),
    ("open writer into closed reader", OBJ, CLOSED, ["incompatible"]),
    (
        "writer field unknown to closed reader",
        {**CLOSED, "properties": {"id": {"type": "integer"}, "x": {"type": "string"}}},
        CLOSED,
        ["incompatible"],
    ),
    (
        "open writer may send a field the reader types",
        OBJ,
        {**OBJ, "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}},
        ["incompatible"],
    ),
    (
        "closed writer never sends that field",
        CLOSED,
        {**OBJ, "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}},
        [],
    ),
    (
        "array items",
        {"type": "array", "items": {"type": "integer"}},
        {"type": "array", "items": {"type": "number"}},
        [],
    ),
    (
        "array items widened",
        {"type": "array", "items": {"type": "number"}},
        {"type": "array", "items": {"type": "integer"}},
        ["incompatible"],
    ),
    ("maxItems within", {"type": "array", "maxItems": 3}, {"type": "array", "maxItems": 5}, []),
    (
        "maxItems beyond",
        {"type": "array", "maxItems": 9},
        {"type": "array", "maxItems": 5},
        ["incompatible"],
    ),
    (
        "unbounded into bounded",
        {"type": "array"},
        {"type": "array", "maxItems": 5},
        ["incompatible"],
    ),
    ("minimum within", {"type": "integer", "minimum": 5}, {"type": "integer", "minimum": 0}, []),
    (
        "minimum beyond",
        {"type": "integer", "minimum": 0},
        {"type": "integer", "minimum": 5},
        ["incompatible"],
    ),
    ("maximum within", {"type": "integer", "maximum": 5}, {"type": "integer", "maximum": 10}, []),
    (
        "maxLength beyond",
        {"type": "string", "maxLength": 20},
        {"type": "string", "maxLength": 10},
        ["incompatible"],
    ),
    (
        "pattern differs",
        {"type": "string", "pattern": "^a"},
        {"type": "string", "pattern": "^b"},
        ["undecidable"],
    ),
    (
        "anyOf differs",
        {"anyOf": [{"type": "string"}]},
        {"anyOf": [{"type": "integer"}]},
        ["undecidable"],
    ),
    (
        "nested object",
        {"type": "object", "properties": {"a": OBJ}, "required": ["a"]},
        {"type": "object", "properties": {"a": CLOSED}, "required": ["a"]},
        ["incompatible"],
    ),
]


@pytest.mark.parametrize(("rule", "writer", "reader", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule(rule: str, writer: Any, reader: Any, expected: list[str]) -> None:
    kinds = sorted({f.kind for f in accepts_all(writer, reader, "w -> r")})
    assert kinds == expected, [str(f) for f in accepts_all(writer, reader, "w -> r")]


def test_findings_name_the_field() -> None:
    (finding,) = accepts_all(
        {"type": "object", "properties": {"id": {"type": "integer"}}}, OBJ, "x"
    )
    assert finding.path == "/id" and "required by the reader" in finding.message
