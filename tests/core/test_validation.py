"""The fast validator must agree with the reference on every case."""

from __future__ import annotations

import time
from typing import Any

import pytest

from jesus.errors import SchemaError
from jesus.validation import check_schema
from jesus.validation.cache import ValidatorCache
from jesus.validation.reference import BACKEND as REFERENCE
from jesus.validation.reference import ReferenceValidator
from jesus.validation.rust import BACKEND as RUST

OBJ = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "name": {"type": "string", "maxLength": 5},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "uniqueItems": True},
    },
    "required": ["id"],
    "additionalProperties": False,
}
CASES: list[tuple[Any, Any]] = [
    (OBJ, {"id": 1}),
    (OBJ, {"id": 0}),
    (OBJ, {"id": 1, "name": "toolong"}),
    (OBJ, {"id": 1, "extra": 1}),
    (OBJ, {"name": "x"}),
    (OBJ, {"id": 1, "tags": ["a", "b"]}),
    (OBJ, {"id": 1, "tags": ["a", "a"]}),
    (OBJ, {"id": 1, "tags": ["c"]}),
    (OBJ, {"id": 1.0}),
    (OBJ, {"id": True}),
    (OBJ, []),
    (OBJ, None),
    ({"type": "integer"}, 3),
    ({"type": "integer"}, 3.5),
    ({"type": "number", "exclusiveMaximum": 10}, 10),
    ({"type": "string", "pattern": "^[a-z]+$"}, "abc"),
    ({"type": "string", "pattern": "^[a-z]+$"}, "ABC"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, 1),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 1),
    ({"anyOf": [{"type": "null"}, {"minimum": 5}]}, 4),
    (
        {"$defs": {"p": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/p"}},
        [1, 2],
    ),
    (
        {"$defs": {"p": {"type": "integer"}}, "type": "array", "items": {"$ref": "#/$defs/p"}},
        [1, "2"],
    ),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": False}, ["a"]),
    ({"type": "array", "prefixItems": [{"type": "string"}], "items": False}, ["a", 1]),
    ({"const": {"a": [1]}}, {"a": [1]}),
    ({"const": {"a": [1]}}, {"a": [2]}),
    (
        {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "items": [{"type": "string"}],
            "additionalItems": False,
        },
        ["a", 1],
    ),
    (
        {"$schema": "http://json-schema.org/draft-07/schema#", "dependencies": {"a": ["b"]}},
        {"a": 1},
    ),
]


@pytest.mark.skipif(RUST is None, reason="jsonschema-rs is not installed")
@pytest.mark.parametrize(("schema", "instance"), CASES)
def test_fast_backend_agrees_with_reference(schema: Any, instance: Any) -> None:
    assert RUST is not None
    fast = RUST.compile(schema)
    ref = ReferenceValidator(schema)
    assert fast.is_valid(instance) == ref.is_valid(instance)
    assert bool(fast.errors(instance)) == (not ref.is_valid(instance))


def test_the_fastest_installed_backend_is_used() -> None:
    backends = [REFERENCE] + ([RUST] if RUST is not None else [])
    cache = ValidatorCache(backends)
    assert cache.backend_name == ("jsonschema-rs" if RUST is not None else "jsonschema")


def test_validators_are_compiled_once_per_schema() -> None:
    compiled = []

    def compile_counting(schema: Any) -> ReferenceValidator:
        compiled.append(schema)
        return ReferenceValidator(schema)

    from jesus.validation.base import ValidatorBackend

    cache = ValidatorCache([ValidatorBackend("counting", 1, compile_counting)])
    first = cache.get({"type": "integer"})
    for _ in range(100):
        assert cache.get({"type": "integer"}) is first
    assert len(compiled) == 1
    assert cache.get(True) is None  # accepts everything: no validator at all


def test_errors_name_the_path() -> None:
    errors = ReferenceValidator(OBJ).errors({"id": 0, "name": "toolong"})
    assert any(e.startswith("/id:") for e in errors)
    assert any(e.startswith("/name:") for e in errors)


@pytest.mark.parametrize("bad", [{"type": "no-such-type"}, {"minimum": "x"}, 3, "string"])
def test_invalid_schemas_are_refused(bad: Any) -> None:
    with pytest.raises(SchemaError):
        check_schema(bad)


def test_a_backtracking_pattern_cannot_stall_the_default_validator() -> None:
    # python-jsonschema takes about a second on 25 characters here, doubling with each one.
    cache = ValidatorCache([REFERENCE, RUST] if RUST is not None else [REFERENCE])
    assert cache.backend_name == "jsonschema-rs"  # a dependency of jesus-core
    check = cache.get({"type": "string", "pattern": "^(a+)+$"})
    assert check is not None
    started = time.perf_counter()
    assert not check.is_valid("a" * 5000 + "!")
    assert time.perf_counter() - started < 5  # exponential would be longer than the universe
