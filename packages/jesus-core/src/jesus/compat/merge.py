"""The conjunction of two schemas as one schema, so `allOf` (and `$ref` with siblings) can be
compared keyword by keyword. `conjoin(a, b)` is exact or None: keywords that do not combine
into one (two different patterns, two `anyOf`s, two objects both closed by their own
`additionalProperties`) are left for the caller, which keeps them as `allOf` parts.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from math import gcd
from typing import Any

from jesus.compat.drafts import Schema

_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains")
_ANNOTATIONS = {"title", "description", "default", "examples", "deprecated", "readOnly"}
_ANNOTATIONS |= {"writeOnly", "$comment", "$schema", "$id", "$anchor", "$defs", "definitions"}


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def strip(schema: Schema) -> Schema:
    """`schema` without annotations: `{"title": "x"}` accepts what `{}` accepts."""
    if not isinstance(schema, dict):
        return schema
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS}


def types_of(schema: dict[str, Any]) -> set[str] | None:
    """The JSON types `schema` allows, `integer` standing for itself; None: any."""
    t = schema.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def _meet_types(a: set[str] | None, b: set[str] | None) -> set[str] | None:
    if a is None or b is None:
        return b if a is None else a
    out = a & b
    if ("number" in a and "integer" in b) or ("number" in b and "integer" in a):
        out.add("integer")
    if "integer" in out and "number" in out:
        out.discard("integer")  # number already holds it
    return out


def fraction(x: float | int) -> Fraction:
    return Fraction(str(x)) if isinstance(x, float) else Fraction(x)


def _lcm(a: Fraction, b: Fraction) -> Fraction:
    num = a.numerator * b.numerator // gcd(a.numerator, b.numerator)
    return Fraction(num, gcd(a.denominator, b.denominator))


def property_schema(schema: dict[str, Any], name: str) -> Schema:
    """The schema `schema` applies to a property `name`: its `properties` entry and each
    `patternProperties` it matches, or else `additionalProperties`."""
    parts = []
    if name in schema.get("properties", {}):
        parts.append(schema["properties"][name])
    for pattern, sub in schema.get("patternProperties", {}).items():
        try:
            if re.search(pattern, name):
                parts.append(sub)
        except re.error:
            return True  # unreadable patterns are reported by the object rules
    if not parts:
        return schema.get("additionalProperties", True)
    return parts[0] if len(parts) == 1 else {"allOf": parts}


def _closes(schema: dict[str, Any]) -> bool:
    return any(
        k in schema for k in ("additionalProperties", "patternProperties", "unevaluatedProperties")
    )


def both(a: Schema, b: Schema) -> Schema:
    """a and b, as one schema when they combine, else as an `allOf` of the two."""
    merged = conjoin(a, b)
    return merged if merged is not None else {"allOf": [a, b]}


def settle(schema: Schema) -> Schema:
    """`unevaluatedProperties` / `unevaluatedItems` where no in-place applicator remains are
    `additionalProperties` / `items`: the only annotations they can see are their siblings'."""
    if not isinstance(schema, dict) or any(k in schema for k in _APPLICATORS):
        return schema
    out = dict(schema)
    for late, early in (
        ("unevaluatedProperties", "additionalProperties"),
        ("unevaluatedItems", "items"),
    ):
        if late in out:
            value = out.pop(late)
            out.setdefault(early, value)
    return out


_APPLICATORS = frozenset(
    {"allOf", "anyOf", "oneOf", "if", "then", "else", "dependentSchemas", "$ref", "$dynamicRef"}
    | {"$recursiveRef"}
)


def conjoin(a: Schema, b: Schema) -> Schema | None:
    a, b = settle(strip(a)), settle(strip(b))
    if a is False or b is False:
        return False
    if a is True or a == {}:
        return b
    if b is True or b == {}:
        return a
    if not isinstance(a, dict) or not isinstance(b, dict) or "$ref" in a or "$ref" in b:
        return None
    if any(k in s for s in (a, b) for k in ("unevaluatedProperties", "unevaluatedItems")):
        return None  # still beside an applicator: merging would change what it evaluates
    if not _separable(a, b):
        return None
    if _closes(a) and _closes(b):
        if canon(_part(a, _OBJECT)) != canon(_part(b, _OBJECT)):
            return None  # two closed objects: each closes on its own names
    elif (_closes(a) and "properties" in b) or (_closes(b) and "properties" in a):
        return _objects(a, b)
    out = dict(a)
    for key, bv in b.items():
        if key not in out or canon(out[key]) == canon(bv):
            out[key] = bv
            continue
        av = out[key]
        if key == "type":
            met = _meet_types(types_of(a), types_of(b))
            if not met:
                return False
            out[key] = sorted(met) if len(met) > 1 else next(iter(met))
        elif key in _LOWER:
            out[key] = max(av, bv)
        elif key in _UPPER:
            out[key] = min(av, bv)
        elif key == "multipleOf":
            m = _lcm(fraction(av), fraction(bv))
            out[key] = int(m) if m.denominator == 1 else float(m)
        elif key == "required":
            out[key] = sorted(set(av) | set(bv))
        elif key == "uniqueItems":
            out[key] = bool(av or bv)
        elif key == "dependentRequired":
            deps = {k: list(v) for k, v in av.items()}
            for name, names in bv.items():
                deps[name] = sorted(set(deps.get(name, [])) | set(names))
            out[key] = deps
        elif key in ("dependentSchemas", "properties"):
            subs = dict(av)
            for name, sub in bv.items():
                subs[name] = both(subs[name], sub) if name in subs else sub
            out[key] = subs
        elif key == "not":
            out[key] = {"anyOf": [av, bv]}  # neither a nor b: not (a or b)
        elif key in ("propertyNames", "items"):
            out[key] = both(av, bv)
        else:
            return None  # pattern and pattern, anyOf and anyOf, enum and enum: kept apart
    return out


_OBJECT = ("properties", "patternProperties", "additionalProperties")
_ARRAY = ("prefixItems", "items")
_CONDITION = ("if", "then", "else")
_CONTAINS = ("contains", "minContains", "maxContains")


def _part(s: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: s[k] for k in keys if k in s}


def _separable(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Keywords that read each other (`items` after `prefixItems`, `then` with `if`,
    `minContains` with `contains`) merge only when one side has none of them, or both the
    same; `items` alone on both sides merges by `both` below."""
    for keys in (_ARRAY, _CONDITION, _CONTAINS):
        pa, pb = _part(a, keys), _part(b, keys)
        if pa and pb and canon(pa) != canon(pb):
            if keys == _ARRAY and set(pa) == set(pb) == {"items"}:
                continue
            return False
    return True


def _objects(a: dict[str, Any], b: dict[str, Any]) -> Schema | None:
    """Two object schemas, one closed (additionalProperties, patternProperties): every name
    either declares gets the schemas both apply to it; the closed side's rest stays."""
    closed, open_ = (a, b) if _closes(a) else (b, a)
    names = set(closed.get("properties", {})) | set(open_.get("properties", {}))
    keep = ("properties", "required")
    merged = conjoin(
        {k: v for k, v in closed.items() if k not in keep},
        {k: v for k, v in open_.items() if k not in keep},
    )
    if not isinstance(merged, dict):
        return merged
    merged["properties"] = {
        n: both(property_schema(closed, n), open_.get("properties", {}).get(n, True))
        for n in sorted(names)
    }
    required = set(closed.get("required", [])) | set(open_.get("required", []))
    if required:
        merged["required"] = sorted(required)
    return merged
