"""Random pairs of small schemas: every incompatibility's witness validates as claimed, and
every verdict of compatible survives the instances of the writer's schema found in a fixed
pool of small JSON values (plus the checker's own examples). Deterministic: derandomized,
no example database."""

from __future__ import annotations

import copy
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jesus.compat.examples import examples
from jesus.compat.resolve import Doc
from jesus.compat.rules import FAILED, accepts_all
from tests.core.test_compat_cases import D07, D2020, assert_witnesses_hold, validator

NAMES = ("a", "b", "xa")
PATTERNS = ("^a", "^[ab]+$", "b$", "^x")
SCALARS: list[Any] = [None, True, False, -1, 0, 1, 2, 3, 0.5, 1.5, "", "a", "b", "ab", "ba", "aaa"]


def _pool(size: int = 400) -> list[Any]:
    rng = random.Random(0)

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth >= 2 or roll < 0.5:
            return rng.choice(SCALARS)
        if roll < 0.75:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(NAMES): value(depth + 1) for _ in range(rng.randint(0, 3))}

    out, seen = [], set()
    while len(out) < size:
        v = value(0)
        if repr(v) not in seen:
            seen.add(repr(v))
            out.append(v)
    return out


POOL = _pool()

leaf = st.one_of(
    st.booleans(),
    st.sampled_from(["null", "boolean", "integer", "number", "string", "object", "array"]).map(
        lambda t: {"type": t}
    ),
    st.lists(st.sampled_from(SCALARS[:12]), min_size=1, max_size=3, unique_by=repr).map(
        lambda vs: {"enum": vs}
    ),
    st.sampled_from(SCALARS).map(lambda v: {"const": v}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["integer", "number"])},
        optional={
            "minimum": st.integers(-1, 2),
            "maximum": st.integers(0, 3),
            "exclusiveMaximum": st.integers(0, 3),
            "multipleOf": st.sampled_from([1, 2, 0.5]),
        },
    ),
    st.fixed_dictionaries(
        {"type": st.just("string")},
        optional={
            "minLength": st.integers(0, 2),
            "maxLength": st.integers(0, 3),
            "pattern": st.sampled_from(PATTERNS),
        },
    ),
)


def _compound(sub: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.lists(st.sampled_from(NAMES), max_size=2, unique=True)
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("object")},
            optional={
                "properties": st.dictionaries(st.sampled_from(NAMES), sub, max_size=2),
                "required": names,
                "additionalProperties": sub,
                "patternProperties": st.dictionaries(
                    st.sampled_from(["^x", "^b"]), sub, max_size=1
                ),
                "propertyNames": st.just({"maxLength": 1}),
                "dependentRequired": st.just({"a": ["b"]}),
            },
        ),
        st.fixed_dictionaries(
            {"type": st.just("array")},
            optional={
                "items": sub,
                "prefixItems": st.lists(sub, min_size=1, max_size=2),
                "minItems": st.integers(0, 2),
                "maxItems": st.integers(0, 3),
                "uniqueItems": st.booleans(),
                "contains": sub,
            },
        ),
        st.lists(sub, min_size=1, max_size=2).map(lambda s: {"anyOf": s}),
        st.lists(sub, min_size=1, max_size=2).map(lambda s: {"oneOf": s}),
        st.lists(sub, min_size=1, max_size=2).map(lambda s: {"allOf": s}),
        sub.map(lambda s: {"not": s}),
        st.tuples(sub, sub, sub).map(lambda t: {"if": t[0], "then": t[1], "else": t[2]}),
    )


schemas = st.recursive(leaf, _compound, max_leaves=5)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    body = draw(schemas)
    shape = draw(st.sampled_from(["plain", "ref-root", "ref-inside"]))
    if shape == "ref-root":
        body = {"$defs": {"d": body}, "$ref": "#/$defs/d"}
    elif shape == "ref-inside":
        body = {"$defs": {"d": body}, "type": "object", "properties": {"a": {"$ref": "#/$defs/d"}}}
    if isinstance(body, dict):
        body = {"$schema": draw(st.sampled_from([D07, D2020])), **body}
    return body


TWEAKS: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("type", st.sampled_from(["integer", "number", "string", "object", "array"])),
    ("minimum", st.integers(-1, 2)),
    ("maximum", st.integers(0, 3)),
    ("multipleOf", st.sampled_from([1, 2, 0.5])),
    ("minLength", st.integers(0, 2)),
    ("maxLength", st.integers(0, 3)),
    ("pattern", st.sampled_from(PATTERNS)),
    ("required", st.lists(st.sampled_from(NAMES), max_size=2, unique=True)),
    ("additionalProperties", st.booleans()),
    ("properties", st.dictionaries(st.sampled_from(NAMES), leaf, max_size=2)),
    ("items", leaf),
    ("prefixItems", st.lists(leaf, min_size=1, max_size=2)),
    ("minItems", st.integers(0, 2)),
    ("maxItems", st.integers(0, 3)),
    ("uniqueItems", st.booleans()),
    ("contains", leaf),
    ("enum", st.lists(st.sampled_from(SCALARS[:12]), min_size=1, max_size=3, unique_by=repr)),
]


def _nodes(node: Any, maps: bool = False) -> list[dict[str, Any]]:
    """The subschemas of `node` (not the maps of names that hold some of them)."""
    if isinstance(node, list):
        return [n for item in node for n in _nodes(item)]
    if not isinstance(node, dict):
        return []
    if maps:
        return [n for v in node.values() for n in _nodes(v)]
    return [node] + [n for k, v in node.items() for n in _nodes(v, k in MAPS)]


MAPS = {"$defs", "properties", "patternProperties", "dependentRequired"}


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Any, Any]:
    """An old and a new version: independent, or the same schema with one keyword changed
    somewhere inside (the shape of most real changes)."""
    old = draw(documents())
    if draw(st.booleans()):
        return old, draw(documents())
    new = copy.deepcopy(old)
    nodes = [n for n in _nodes(new) if n is not new or "$ref" not in n]
    if not nodes:
        return old, draw(documents())
    node = draw(st.sampled_from(nodes))
    keys = [k for k in node if not k.startswith("$")]
    if keys and draw(st.booleans()):
        del node[draw(st.sampled_from(keys))]
    else:
        key, values = draw(st.sampled_from(TWEAKS))
        node[key] = draw(values)
    return old, new


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pairs(), st.booleans())
def test_verdicts_hold_on_instances(pair: tuple[Any, Any], backward: bool) -> None:
    writer, reader = pair if backward else pair[::-1]
    findings = accepts_all(writer, reader, "w -> r")
    assert not [f for f in findings if f.message.startswith(FAILED)], findings
    assert_witnesses_hold(writer, reader, findings)
    if findings:
        return
    w, r = validator(writer), validator(reader)
    candidates = POOL + examples(Doc(writer).root, Doc(writer), limit=100)
    sent = [v for v in candidates if w.is_valid(v)]
    refused = [v for v in sent if not r.is_valid(v)]
    assert not refused, (writer, reader, refused[:3])
