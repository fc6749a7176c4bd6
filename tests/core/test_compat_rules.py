"""Each compatibility rule: does the reader accept everything the writer may send?"""

from __future__ import annotations

from typing import Any

import pytest

from jesus.compat.check import check_registry, check_start
from jesus.compat.rules import accepts_all
from jesus.errors import IncompatibleSchemas
from jesus.messages import ResponseMode
from jesus.registry.base import InstanceRecord, MethodRecord
from tests.core.test_compat_cases import assert_witnesses_hold

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
        "pattern differs, a string shows it",
        {"type": "string", "pattern": "^a"},
        {"type": "string", "pattern": "^b"},
        ["incompatible"],
    ),
    (
        # Every string starting "ab" contains "a", but the rules do not prove regex inclusion.
        "pattern differs, nothing shows it",
        {"type": "string", "pattern": "^ab"},
        {"type": "string", "pattern": "a"},
        ["undecidable"],
    ),
    (
        "anyOf differs",
        {"anyOf": [{"type": "string"}]},
        {"anyOf": [{"type": "integer"}]},
        ["incompatible"],
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
    findings = accepts_all(writer, reader, "w -> r")
    assert sorted({f.kind for f in findings}) == expected, [str(f) for f in findings]
    assert_witnesses_hold(writer, reader, findings)


def test_findings_name_the_field() -> None:
    (finding,) = accepts_all(
        {"type": "object", "properties": {"id": {"type": "integer"}}}, OBJ, "x"
    )
    assert finding.path == "/id" and "required by the reader" in finding.message


def test_a_witness_is_printed() -> None:
    (finding,) = accepts_all(
        {"type": "object", "properties": {"id": {"type": "integer"}}}, OBJ, "x"
    )
    assert finding.instance == {} and "e.g. the writer may send {}" in str(finding)


def test_undecidable_findings_name_the_keyword() -> None:
    (finding,) = accepts_all({"$ref": "https://example.com/a.json"}, {"type": "string"}, "x")
    assert finding.kind == "undecidable" and "'$ref'" in finding.message
    assert finding.witness is None


def _billing(version: str, request: Any, started: float) -> InstanceRecord:
    method = MethodRecord(
        request=request, response={"type": "object"}, mode=ResponseMode.RESPONSE, channel="tcp"
    )
    return InstanceRecord(
        "billing", version, f"billing-{version}", {}, {"charge": method}, started_at=started
    )


WIDE = {"type": "object", "properties": {"id": {"type": ["integer", "string"]}}}


@pytest.mark.parametrize(
    ("mode", "breaks"),
    [("backward", False), ("forward", True), ("full", True)],
)
def test_modes_swap_the_roles(mode: str, breaks: bool) -> None:
    # 2.0 widens the request: old callers still fit (backward); new callers may send a string
    # id, or none, which 1.0 refuses (forward), and the report shows such a request.
    old, new = _billing("1.0", OBJ, 1.0), _billing("2.0", WIDE, 2.0)
    report = check_start([new], [old], mode)
    assert report.ok is not breaks, report.text()
    if breaks:
        found = report.incompatible
        assert all("(new callers)" in f.where and f.witness is not None for f in found)
        assert any(isinstance(f.instance.get("id"), str) for f in found), report.text()
        assert "e.g. the writer may send" in report.text()
        assert "e.g. the writer may send" in str(IncompatibleSchemas(report))
    assert check_registry([old, new], mode).ok is not breaks


D04 = "http://json-schema.org/draft-04/schema#"
D2019 = "https://json-schema.org/draft/2019-09/schema"
D2020 = "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize(
    ("writer", "reader", "expected"),
    [
        # draft-04: a boolean exclusiveMaximum makes `maximum` exclusive
        (
            {"$schema": D04, "type": "number", "maximum": 10, "exclusiveMaximum": True},
            {"$schema": D2020, "type": "number", "exclusiveMaximum": 10},
            [],
        ),
        (
            {"$schema": D04, "type": "number", "maximum": 10},
            {"$schema": D2020, "type": "number", "exclusiveMaximum": 10},
            ["incompatible"],
        ),
        # 2019-09 still spells a tuple `items: [...]`; 2020-12 spells it prefixItems
        (
            {"$schema": D2019, "type": "array", "items": [{"type": "integer"}]},
            {"$schema": D2020, "type": "array", "prefixItems": [{"type": "number"}]},
            [],
        ),
        (
            {"$schema": D2019, "type": "array", "items": [{"type": "number"}]},
            {"$schema": D2020, "type": "array", "prefixItems": [{"type": "integer"}]},
            ["incompatible"],
        ),
        # before 2019-09, keywords beside a $ref are ignored
        (
            {"$schema": D04, "definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s"},
            {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "definitions": {"s": {"type": "string"}},
                "$ref": "#/definitions/s",
                "maxLength": 1,
            },
            [],
        ),
    ],
)
def test_drafts_are_read_by_their_own_rules(writer: Any, reader: Any, expected: list[str]) -> None:
    findings = accepts_all(writer, reader, "w -> r")
    assert sorted({f.kind for f in findings}) == expected, [str(f) for f in findings]
    assert_witnesses_hold(writer, reader, findings)


def test_a_cycle_that_never_descends_is_not_assumed() -> None:
    # `a` is "a or a string": only a string, yet meeting `a` again inside itself, at the same
    # place in the instance, proves nothing.
    loop = {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}}}
    findings = accepts_all({"type": "integer"}, {**loop, "$ref": "#/$defs/a"}, "x")
    assert [f.kind for f in findings] == ["undecidable"], findings


@pytest.mark.parametrize(
    ("writer", "reader", "expected"),
    [
        # `items` of one part applies from the first item; another part's prefixItems must not
        # move it past position 0.
        (
            {"type": "array", "maxItems": 1},
            {"allOf": [{"items": {"type": "integer"}}, {"prefixItems": [{}]}]},
            ["incompatible"],
        ),
        # One part's additionalProperties closes on its own (empty) list of names.
        (
            {"type": "object", "properties": {"x": {}}, "additionalProperties": False},
            {"allOf": [{"additionalProperties": False}, {"patternProperties": {"^x": {}}}]},
            ["incompatible"],
        ),
        # `then` without `if` in its own part constrains nothing.
        ({"type": "integer"}, {"allOf": [{"if": {"minimum": 0}}, {"then": False}]}, []),
    ],
)
def test_allof_parts_that_read_each_other_stay_apart(
    writer: Any, reader: Any, expected: list[str]
) -> None:
    findings = accepts_all(writer, reader, "w -> r")
    assert sorted({f.kind for f in findings}) == expected, [str(f) for f in findings]
    assert_witnesses_hold(writer, reader, findings)
