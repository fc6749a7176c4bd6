"""One spelling for every draft: a schema document is rewritten, once, into 2020-12 keywords,
so the rules never ask which draft they are reading.

What the rewrite does, by the validator's own vocabulary (`jsonschema`'s `VALIDATORS` for the
draft named by `$schema`, 2020-12 when there is none, as jesus validates messages):

- keywords that draft's validator ignores are dropped (an `unevaluatedProperties` in a
  draft-07 schema constrains nothing);
- draft-04 to 2019-09 `items: [...]` / `additionalItems` become `prefixItems` / `items`;
- `dependencies` becomes `dependentRequired` and `dependentSchemas` (jsonschema-rs reads it in
  every draft, python-jsonschema only before 2019-09; a witness must convince both);
- draft-04 boolean `exclusiveMinimum` / `exclusiveMaximum` become numbers;
- before 2019-09, keywords beside `$ref` are ignored, so they are dropped.

`$defs` and `definitions` are kept wherever they are: `$ref` finds them by pointer.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import jsonschema.validators

Schema = Any  # a JSON Schema: a dict or a bool

DEFAULT = jsonschema.Draft202012Validator
_LEGACY_REF = {jsonschema.Draft4Validator, jsonschema.Draft6Validator, jsonschema.Draft7Validator}
_TUPLE_ITEMS = _LEGACY_REF | {jsonschema.Draft201909Validator}

# Keywords whose value is a schema, a list of schemas, or a map of schemas (2020-12 spelling).
SCHEMA_KEYS = (
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "items",
    "contains",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
)
LIST_KEYS = ("allOf", "anyOf", "oneOf", "prefixItems")
MAP_KEYS = ("properties", "patternProperties", "dependentSchemas")  # $defs: see _sub
# Not assertions: kept so that pointers into them, and reports, still work.
_KEEP = {"$schema", "$id", "$anchor", "$defs", "definitions", "$comment", "format"}


def validator_class(schema: Schema) -> type[Any]:
    """The validator jesus uses for `schema` (its `$schema`, or 2020-12)."""
    if isinstance(schema, dict) and isinstance(schema.get("$schema"), str):
        cls: type[Any] = jsonschema.validators.validator_for(schema, default=DEFAULT)
        return cls
    return DEFAULT


def asserts_format(cls: type[Any]) -> bool:
    """Before 2019-09 jsonschema-rs, which validates jesus messages, asserts `format`."""
    return cls in _LEGACY_REF


def to_2020(schema: Schema, cls: type[Any]) -> Schema:
    """The document `schema`, written for `cls`, in 2020-12 keywords (a new object)."""
    if not isinstance(schema, dict):
        return schema
    known = set(cls.VALIDATORS)
    if "if" in known:
        known |= {"then", "else"}  # read by the `if` validator
    if cls is jsonschema.Draft4Validator:
        known |= {"exclusiveMinimum", "exclusiveMaximum"}  # booleans, read by min/max
    # jsonschema-rs, which validates jesus messages, reads `dependencies` in every draft.
    known.add("dependencies")
    if "dependentRequired" in known:
        known |= {"minContains", "maxContains"}  # read by `contains`, 2019-09 on
    src = dict(schema)
    if cls in _LEGACY_REF and "$ref" in src:
        src = {k: v for k, v in src.items() if k == "$ref" or k in _KEEP}
    out: dict[str, Any] = {}
    for key, value in src.items():
        if key in _KEEP:
            out[key] = _sub(key, value, cls)
        elif key in known or key in ("$ref",):
            out[key] = value
        # else: an annotation, or a keyword this draft's validator ignores
    if cls in _TUPLE_ITEMS and isinstance(out.get("items"), list):
        out["prefixItems"] = out.pop("items")
        if "additionalItems" in out:
            out["items"] = out.pop("additionalItems")
    out.pop("additionalItems", None)
    if "dependencies" in out:
        for name, dep in out.pop("dependencies").items():
            key = "dependentRequired" if isinstance(dep, list) else "dependentSchemas"
            out.setdefault(key, {})[name] = dep
    for bound, edge in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # draft-04: `exclusiveMinimum: true` makes `minimum` exclusive
        if isinstance(out.get(bound), bool) and out.pop(bound) and edge in out:
            out[bound] = out.pop(edge)
    for key in SCHEMA_KEYS:
        if key in out:
            out[key] = to_2020(out[key], cls)
    for key in LIST_KEYS:
        if isinstance(out.get(key), list):
            out[key] = [to_2020(s, cls) for s in out[key]]
    for key in MAP_KEYS:
        if isinstance(out.get(key), dict):
            out[key] = {k: to_2020(s, cls) for k, s in out[key].items()}
    return out


def _sub(key: str, value: Any, cls: type[Any]) -> Any:
    if key in ("$defs", "definitions") and isinstance(value, dict):
        return {k: to_2020(s, cls) for k, s in value.items()}
    return value
