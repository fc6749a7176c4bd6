"""The compatibility rules, case by case: each pair of schemas is checked in both directions
(a writes to b, b writes to a) and, unless a case is bound to one draft's spelling, under both
draft-07 and 2020-12. Every witness an incompatibility carries is checked with the validator
of each schema's own draft: valid under the writer's, invalid under the reader's.

`test_decided_share` keeps the share of verdicts the rules decide from sliding back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema.validators
import pytest

from jesus.compat import Finding
from jesus.compat.rules import accepts_all

D07 = "http://json-schema.org/draft-07/schema#"
D2020 = "https://json-schema.org/draft/2020-12/schema"
C, X, U = "compatible", "incompatible", "undecidable"


def validator(schema: Any) -> Any:
    if isinstance(schema, bool):
        return jsonschema.Draft202012Validator(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


def assert_witnesses_hold(writer: Any, reader: Any, findings: list[Finding]) -> None:
    """Each incompatibility carries a witness the writer accepts and the reader refuses."""
    for f in findings:
        if f.kind == "incompatible":
            assert f.witness is not None, f
            assert validator(writer).is_valid(f.instance), f"writer refuses its witness: {f}"
            assert not validator(reader).is_valid(f.instance), f"reader accepts it: {f}"
        else:
            assert f.witness is None, f


def verdict(findings: list[Finding]) -> str:
    kinds = {f.kind for f in findings}
    return X if "incompatible" in kinds else U if "undecidable" in kinds else C


@dataclass(frozen=True)
class Case:
    rule: str
    a: Any
    b: Any
    a_to_b: str  # a writes, b reads
    b_to_a: str
    drafts: tuple[str, ...] = ("07", "2020")
    # the verdict under draft-07 where it differs (a keyword that draft does not have)
    d07: tuple[str, str] | None = None


INT, NUM, STR = {"type": "integer"}, {"type": "number"}, {"type": "string"}


def obj(props: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, **more}


TREE = {
    "$defs": {
        "node": obj(
            {"value": INT, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            required=["value"],
            additionalProperties=False,
        )
    },
    "$ref": "#/$defs/node",
}
TREE_NUM = {
    **TREE,
    "$defs": {
        "node": {
            **TREE["$defs"]["node"],
            "properties": {
                "value": NUM,
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
        }
    },
}

CASES = [
    # booleans
    Case("true and {}", True, {}, C, C),
    Case("false sends nothing", False, STR, C, X),
    Case("true into false", True, False, X, C),
    Case(
        "items false: only []",
        {"type": "array", "items": False},
        {"type": "array", "items": STR},
        C,
        X,
    ),
    # type
    Case("integer into number", INT, NUM, C, X),
    Case("string into string or null", STR, {"type": ["string", "null"]}, C, X),
    Case("untyped into typed", {}, STR, X, C),
    # enum / const
    Case("enum within enum", {"enum": ["a"]}, {"enum": ["a", "b"]}, C, X),
    Case("const into type", {"const": "a"}, STR, C, X),
    Case("booleans are an enum", {"type": "boolean"}, {"enum": [True, False]}, C, C),
    Case("mixed enum into a type", {"enum": [1, "a"]}, INT, X, X),
    # required
    Case("required added", obj({"id": INT}), obj({"id": INT}, required=["id"]), X, C),
    # Stricter than a schema registry: an open writer may omit a field it never declared.
    Case(
        "required swapped for an undeclared field",
        obj({"foo": STR}, required=["foo"]),
        obj({"foo": STR}, required=["bar"]),
        X,
        X,
    ),
    # properties, open and closed objects
    Case(
        "a property declared false is never sent",
        obj({"foo": False}, additionalProperties=False),
        obj({}, additionalProperties=False),
        C,
        C,
    ),
    Case(
        "closed writer into open reader",
        obj({"id": INT}, additionalProperties=False),
        obj({"id": INT}),
        C,
        X,
    ),
    Case(
        "closed writer, reader adds a typed field",
        obj({"id": INT}, additionalProperties=False),
        obj({"id": INT, "note": STR}),
        C,
        X,
    ),
    Case(
        "open writer, reader adds a typed field",
        obj({"id": INT}),
        obj({"id": INT, "note": STR}),
        X,
        C,
    ),
    # patternProperties
    Case(
        "a pattern opens a closed reader",
        obj({"id": INT}, additionalProperties=False),
        obj({"id": INT}, patternProperties={"^x_": STR}, additionalProperties=False),
        C,
        X,
    ),
    Case(
        "a property narrows a pattern",
        {
            "type": "object",
            "patternProperties": {"^S_": STR, "^I_": INT},
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"S_x": {"type": "string", "maxLength": 3}},
            "patternProperties": {"^S_": STR, "^I_": INT},
            "additionalProperties": False,
        },
        X,
        C,
    ),
    Case(
        "a pattern into additionalProperties",
        {"type": "object", "patternProperties": {"^n_": INT}, "additionalProperties": False},
        {"type": "object", "additionalProperties": NUM},
        C,
        X,
    ),
    # unevaluatedProperties (2019-09 on; draft-07 ignores it)
    Case(
        "unevaluatedProperties closes like additionalProperties",
        obj({"foo": STR}, unevaluatedProperties=False),
        obj({"foo": STR, "bar": STR}, unevaluatedProperties=False),
        C,
        X,
        d07=(X, C),  # draft-07 ignores it: an open writer into a reader that types bar
    ),
    Case(
        "unevaluatedProperties sees allOf",
        {"type": "object", "allOf": [{"properties": {"foo": STR}}], "unevaluatedProperties": False},
        obj({"foo": STR}, additionalProperties=False),
        C,
        C,
        drafts=("2020",),
    ),
    Case(
        "unevaluatedProperties added",
        {"type": "object"},
        {"type": "object", "unevaluatedProperties": False},
        X,
        C,
        d07=(C, C),
    ),
    # propertyNames, counts
    Case(
        "propertyNames widened",
        {"type": "object", "propertyNames": {"maxLength": 3}},
        {"type": "object", "propertyNames": {"maxLength": 5}},
        C,
        X,
    ),
    Case(
        "closed writer's names fit propertyNames",
        obj({"ab": {}}, additionalProperties=False),
        {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
        C,
        X,
    ),
    Case(
        "maxProperties",
        {"type": "object", "maxProperties": 2},
        {"type": "object", "maxProperties": 3},
        C,
        X,
    ),
    Case(
        "minProperties",
        {"type": "object", "minProperties": 2},
        {"type": "object", "minProperties": 1},
        C,
        X,
    ),
    # dependentRequired / dependentSchemas (2020-12) and dependencies (draft-07)
    Case(
        "dependentRequired reversed",
        obj({"foo": NUM, "bar": STR}, dependentRequired={"foo": ["bar"]}),
        obj({"foo": NUM, "bar": STR}, dependentRequired={"bar": ["foo"]}),
        X,
        X,
        drafts=("2020",),
    ),
    Case(
        "dependencies (array) reversed",
        obj({"foo": NUM, "bar": STR}, dependencies={"foo": ["bar"]}),
        obj({"foo": NUM, "bar": STR}, dependencies={"bar": ["foo"]}),
        X,
        X,
        drafts=("07",),
    ),
    Case(
        "dependentRequired dropped",
        obj({"foo": NUM, "bar": STR}, dependentRequired={"foo": ["bar"]}),
        obj({"foo": NUM, "bar": STR}),
        C,
        X,
        drafts=("2020",),
    ),
    Case(
        "dependentSchemas added",
        {"type": "object"},
        {"type": "object", "dependentSchemas": {"foo": {"required": ["bar"]}}},
        X,
        C,
        drafts=("2020",),
    ),
    Case(
        "dependencies (schema) added",
        {"type": "object"},
        {"type": "object", "dependencies": {"foo": {"required": ["bar"]}}},
        X,
        C,
        drafts=("07",),
    ),
    # python-jsonschema ignores `dependencies` from 2019-09 on; jsonschema-rs, which validates
    # jesus messages, still reads it: no witness convinces both.
    Case(
        "dependencies in 2020-12",
        {"type": "object"},
        {"type": "object", "dependencies": {"foo": ["bar"]}},
        U,
        C,
        drafts=("2020",),
    ),
    # arrays
    Case("items widened", {"type": "array", "items": INT}, {"type": "array", "items": NUM}, C, X),
    Case(
        "prefixItems",
        {"type": "array", "prefixItems": [INT, STR], "items": False},
        {"type": "array", "prefixItems": [NUM]},
        C,
        X,
        drafts=("2020",),
    ),
    Case(
        "items as a tuple, additionalItems",
        {"type": "array", "items": [INT, STR], "additionalItems": False},
        {"type": "array", "items": [NUM]},
        C,
        X,
        drafts=("07",),
    ),
    Case(
        "additionalItems without a tuple means nothing",
        {"type": "array"},
        {"type": "array", "additionalItems": False},
        C,
        C,
        drafts=("07",),
    ),
    Case("maxItems", {"type": "array", "maxItems": 3}, {"type": "array", "maxItems": 5}, C, X),
    Case("uniqueItems", {"type": "array", "uniqueItems": True}, {"type": "array"}, C, X),
    Case("contains", {"type": "array", "contains": INT}, {"type": "array", "contains": NUM}, C, X),
    Case(
        "minContains",
        {"type": "array", "contains": INT, "minContains": 2},
        {"type": "array", "contains": INT, "minContains": 1},
        C,
        X,
        d07=(C, C),
    ),
    # numbers
    Case("minimum", {"type": "integer", "minimum": 5}, {"type": "integer", "minimum": 0}, C, X),
    Case(
        "exclusive and inclusive maximum",
        {"type": "number", "exclusiveMaximum": 10},
        {"type": "number", "maximum": 10},
        C,
        X,
    ),
    Case(
        "integer bounds round inward",
        {"type": "integer", "maximum": 5.5},
        {"type": "integer", "maximum": 5},
        C,
        C,
    ),
    Case(
        "multipleOf divides",
        {"type": "integer", "multipleOf": 4},
        {"type": "integer", "multipleOf": 2},
        C,
        X,
    ),
    Case("integer into multipleOf 0.5", INT, {"type": "number", "multipleOf": 0.5}, C, X),
    # strings
    Case(
        "maxLength", {"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, C, X
    ),
    Case(
        "pattern identical",
        {"type": "string", "pattern": "^a"},
        {"type": "string", "pattern": "^a"},
        C,
        C,
    ),
    Case("pattern removed", {"type": "string", "pattern": "^[a-z]+$"}, STR, C, X),
    Case(
        "pattern changed, witnessed",
        {"type": "string", "pattern": "^[a-z]+$"},
        {"type": "string", "pattern": "^[0-9]+$"},
        X,
        X,
    ),
    # "^ab" implies "a", but the rules do not prove regex inclusion.
    Case(
        "pattern changed, not witnessed",
        {"type": "string", "pattern": "^ab"},
        {"type": "string", "pattern": "a"},
        U,
        X,
    ),
    # jsonschema-rs asserts `format` before 2019-09; the reference validator cannot show it.
    Case("format added", STR, {"type": "string", "format": "email"}, C, C, d07=(U, C)),
    # $ref
    Case(
        "$ref into $defs",
        {"$defs": {"id": INT}, **obj({"id": {"$ref": "#/$defs/id"}}, required=["id"])},
        obj({"id": NUM}, required=["id"]),
        C,
        X,
    ),
    Case(
        "a root that is only a $ref",
        {"$ref": "#/definitions/s", "definitions": {"s": STR}},
        STR,
        C,
        C,
    ),
    Case("a recursive schema", TREE, TREE_NUM, C, X, drafts=("2020",)),
    Case("a remote $ref", {"$ref": "https://example.com/s.json"}, STR, U, U),
    # allOf, anyOf, oneOf, not
    Case(
        "allOf is a conjunction",
        {
            "allOf": [
                obj({"id": INT}, required=["id"]),
                {"properties": {"name": STR}, "required": ["name"]},
            ]
        },
        {"type": "object", "required": ["id", "name"]},
        C,
        X,
    ),
    Case("anyOf of types", {"type": ["string", "integer"]}, {"anyOf": [STR, INT]}, C, C),
    Case("anyOf branch dropped", {"anyOf": [STR, {"type": "null"}]}, STR, X, C),
    Case("oneOf of disjoint types", STR, {"oneOf": [STR, INT]}, C, X),
    Case(
        "oneOf, exclusivity not proven",
        {"type": "string", "maxLength": 3},
        {"oneOf": [{"type": "string", "maxLength": 5}, {"type": "string", "pattern": "^zq"}]},
        U,
        X,
    ),
    Case(
        "oneOf, both branches match",
        STR,
        {"oneOf": [STR, {"type": "string", "maxLength": 1}]},
        X,
        C,
    ),
    Case("not a type", STR, {"not": {"type": "null"}}, C, X),
    Case("not against not", {"not": {"type": ["string", "null"]}}, {"not": STR}, C, X),
    Case("enum against not const", {"enum": ["a", "b"]}, {"not": {"const": "c"}}, C, X),
    # if / then / else
    Case(
        "the writer always meets if",
        obj({"kind": {"const": "x"}, "n": INT}, required=["kind", "n"]),
        {
            "type": "object",
            "if": {"properties": {"kind": {"const": "x"}}},
            "then": {"properties": {"n": NUM}},
            "else": {"properties": {"n": STR}},
        },
        C,
        X,
    ),
    Case(
        "both branches decide alike",
        INT,
        {"if": {"minimum": 0}, "then": NUM, "else": INT},
        C,
        X,
    ),
]


def _with_draft(schema: Any, draft: str) -> Any:
    if not isinstance(schema, dict):
        return schema
    return {"$schema": D07 if draft == "07" else D2020, **schema}


def _runs() -> list[tuple[str, Any, Any, str]]:
    runs = []
    for case in CASES:
        for draft in case.drafts:
            a, b = _with_draft(case.a, draft), _with_draft(case.b, draft)
            there, back = case.d07 if draft == "07" and case.d07 else (case.a_to_b, case.b_to_a)
            runs.append((f"{case.rule} [{draft}, a->b]", a, b, there))
            runs.append((f"{case.rule} [{draft}, b->a]", b, a, back))
    return runs


RUNS = _runs()


@pytest.mark.parametrize(("name", "writer", "reader", "expected"), RUNS, ids=[r[0] for r in RUNS])
def test_case(name: str, writer: Any, reader: Any, expected: str) -> None:
    findings = accepts_all(writer, reader, "w -> r")
    assert verdict(findings) == expected, [str(f) for f in findings]
    assert_witnesses_hold(writer, reader, findings)


def test_decided_share() -> None:
    undecided = sum(1 for r in RUNS if r[3] == U)
    assert undecided / len(RUNS) < 0.05, (undecided, len(RUNS))
