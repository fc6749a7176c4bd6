"""Instances a schema may accept: candidates for witnesses, never trusted as they are.
Every candidate is checked with the real validator before it is shown to anyone
(witness.py), so a wrong guess here costs a decision, never a false refusal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import islice
from typing import Any

from jesus.compat.drafts import Schema
from jesus.compat.merge import both, fraction, property_schema, strip, types_of
from jesus.compat.regex import strings_matching
from jesus.compat.resolve import Doc

_ANY: tuple[Any, ...] = (None, True, 0, 0.5, "", [], {}, "x", -1)
_TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


def examples(node: Schema, doc: Doc, depth: int = 0, limit: int = 40) -> list[Any]:
    """Up to `limit` distinct candidate instances of `node`, simplest first."""
    out: list[Any] = []
    seen: set[str] = set()
    for value in _candidates(node, doc, depth):
        key = repr(value)
        if key not in seen:
            seen.add(key)
            out.append(value)
            if len(out) >= limit:
                break
    return out


def valid_examples(node: Schema, doc: Doc, depth: int = 0, limit: int = 40) -> list[Any]:
    return [v for v in examples(node, doc, depth, limit) if doc.valid(node, v)]


def first_valid(node: Schema, doc: Doc, depth: int = 0) -> tuple[Any] | None:
    for value in examples(node, doc, depth, limit=20):
        if doc.valid(node, value):
            return (value,)
    return None


def _candidates(node: Schema, doc: Doc, depth: int) -> Iterator[Any]:
    resolved = doc.resolve(node)
    if resolved is False or not isinstance(resolved, dict | bool):
        return
    if resolved is True or depth > 6:
        yield from _ANY
        return
    schema = strip(resolved)
    if "allOf" in schema:
        merged: Schema = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            target = doc.resolve(part)
            merged = both(merged, target if isinstance(target, dict | bool) else True)
        if isinstance(merged, dict) and "allOf" not in merged:
            yield from _candidates(merged, doc, depth + 1)
            return
        yield from _candidates(schema["allOf"][0], doc, depth + 1)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            base = {k: v for k, v in schema.items() if k != key}
            for branch in schema[key]:
                yield from islice(_candidates(both(base, branch), doc, depth + 1), 8)
            return
    if "const" in schema:
        yield schema["const"]
        return
    if "enum" in schema:
        yield from schema["enum"]
        return
    if "if" in schema:
        base = {k: v for k, v in schema.items() if k not in ("if", "then", "else")}
        yield from islice(
            _candidates(both(both(base, schema["if"]), schema.get("then", True)), doc, depth + 1), 8
        )
        yield from islice(_candidates(both(base, schema.get("else", True)), doc, depth + 1), 8)
    types = types_of(schema)
    for t in _TYPES if types is None else [t for t in _TYPES if t in types]:
        yield from _by_type(t, schema, doc, depth)
    if types is None or "number" in types:
        yield from _by_type("integer", schema, doc, depth)


def _by_type(t: str, schema: dict[str, Any], doc: Doc, depth: int) -> Iterator[Any]:
    if t == "null":
        yield None
    elif t == "boolean":
        yield from (False, True)
    elif t in ("integer", "number"):
        yield from _numbers(schema, integer=t == "integer")
    elif t == "string":
        yield from _strings(schema)
    elif t == "array":
        yield from _arrays(schema, doc, depth)
    elif t == "object":
        yield from _objects(schema, doc, depth)


def _numbers(schema: dict[str, Any], integer: bool) -> Iterator[Any]:
    points: list[float] = [0, 1, -1, 2, 10, 100, -100, 10**6, -(10**6)]
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(schema.get(key), int | float):
            b = schema[key]
            points += [b, b + 1, b - 1, b + 0.5, b - 0.5, math.floor(b), math.ceil(b)]
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        grid = []
        for p in points:
            k = math.floor(fraction(p) / fraction(step))
            grid += [k * fraction(step), (k + 1) * fraction(step), (k - 1) * fraction(step)]
        points = [float(g) if g.denominator != 1 else int(g) for g in grid] + [step]
    if not integer:
        points += [0.5, 1.5, -0.5]
    for p in points:
        if integer:
            if float(p).is_integer():
                yield int(p)
        else:
            yield p


def _strings(schema: dict[str, Any]) -> Iterator[str]:
    lengths = [0, 1, 3]
    for key in ("minLength", "maxLength"):
        if isinstance(schema.get(key), int):
            lengths += [schema[key], schema[key] + 1, max(schema[key] - 1, 0)]
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        for sample in strings_matching(pattern):
            yield sample
            for n in lengths:  # stretched or cut to the bounds the other side may hold
                yield (sample * (n // max(len(sample), 1) + 1))[:n] if sample else "a" * n
    for n in sorted(set(lengths)):
        yield "a" * n
    yield from ("0", "A", " ", "a-b", "~", "é")


def _arrays(schema: dict[str, Any], doc: Doc, depth: int) -> Iterator[list[Any]]:
    prefix = schema.get("prefixItems", [])
    rest = schema.get("items", True)
    heads = [first_valid(p, doc, depth + 1) for p in prefix]
    if any(h is None for h in heads):
        heads = heads[: next(i for i, h in enumerate(heads) if h is None)]
    head = [h[0] for h in heads if h is not None]
    low = schema.get("minItems", 0)
    items = valid_examples(rest, doc, depth + 1, limit=6) if rest is not False else []
    contains = schema.get("contains")
    extra = valid_examples(contains, doc, depth + 1, limit=3) if contains is not None else []
    yield head[:low] if len(head) >= low else head
    for item in items + extra:
        yield [*head, item]
        yield [*head, *([item] * max(low - len(head), 1))]
        yield [*head, item, item]
    if len(items) > 1:
        yield [*head, *items]
    yield []


def _objects(schema: dict[str, Any], doc: Doc, depth: int) -> Iterator[dict[str, Any]]:
    props: dict[str, Any] = schema.get("properties", {})
    required = [n for n in schema.get("required", []) if isinstance(n, str)]
    base: dict[str, Any] = {}
    for name in required:
        value = first_valid(property_schema(schema, name), doc, depth + 1)
        base[name] = value[0] if value is not None else None
    yield dict(base)
    optional = [n for n in props if n not in base]
    full = dict(base)
    for name in optional:
        for value in valid_examples(property_schema(schema, name), doc, depth + 1, limit=3):
            yield {**base, name: value}
            full.setdefault(name, value)
    yield full
    for pattern in schema.get("patternProperties", {}):
        for name in islice(strings_matching(pattern), 2):
            for value in valid_examples(property_schema(schema, name), doc, depth + 1, limit=2):
                yield {**base, name: value}
    for name in ("x", "zz", "0"):
        if name not in props:
            for value in valid_examples(property_schema(schema, name), doc, depth + 1, limit=3):
                yield {**base, name: value}
    for name, deps in schema.get("dependentRequired", {}).items():
        yield {**full, name: full.get(name), **{d: full.get(d) for d in deps}}
