"""Does every instance a writer's schema allows validate under a reader's schema?

`accepts_all(writer, reader)` answers with findings; none means compatible. The rules, each
tested in tests/core/test_compat_rules.py:

- A reader schema `true` (or `{}`) accepts everything; a writer schema `false` sends nothing.
- type: the writer's types must be among the reader's (`integer` counts as a `number`); a writer
  without `type` may send anything, which a typed reader refuses.
- enum / const: a reader's enum must contain every value the writer may send; so the writer must
  have an enum (or const) within it.
- Objects: a field the reader requires must be required by the writer. A field the writer
  declares is checked against the reader's declaration of it, or against the reader's
  `additionalProperties`. A closed reader (`additionalProperties: false`) needs a closed writer
  whose fields it all declares; an open writer (the default) may send any extra field, which
  matters when the reader declares that field with a narrower schema.
- Arrays: items checked like values; the writer's minItems at least, and maxItems at most, the
  reader's.
- Numbers and strings: the writer's range (minimum, maximum, exclusive bounds, minLength,
  maxLength) must lie within the reader's.
- Anything else that differs between the two (pattern, multipleOf, $ref, anyOf, oneOf, allOf,
  not, if/then/else, dependencies, unknown keywords) is reported undecidable rather than
  guessed. Identical subschemas are always compatible.
"""

from __future__ import annotations

import json
from typing import Any

from jesus.compat.report import INCOMPATIBLE, UNDECIDABLE, Finding

_HANDLED = {
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "format",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
}
_LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems")
_UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems")


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _types(schema: dict[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def accepts_all(writer: Any, reader: Any, where: str = "", path: str = "") -> list[Finding]:
    """Findings for instances valid under `writer` that `reader` may refuse (none: compatible)."""
    here = path or "(root)"
    if reader is True or reader == {} or writer is False or _same(writer, reader):
        return []
    if reader is False:
        return [Finding(INCOMPATIBLE, where, here, "the reader accepts nothing")]
    if writer is True or writer == {}:
        return [
            Finding(
                INCOMPATIBLE, where, here, "the writer may send anything; the reader is narrower"
            )
        ]
    if not isinstance(writer, dict) or not isinstance(reader, dict):
        return [Finding(UNDECIDABLE, where, here, "schema is neither an object nor a boolean")]
    out: list[Finding] = []

    def bad(message: str, at: str = here) -> None:
        out.append(Finding(INCOMPATIBLE, where, at, message))

    unknown = sorted(
        k
        for k in set(writer) | set(reader)
        if k not in _HANDLED and not _same(writer.get(k), reader.get(k))
    )
    for keyword in unknown:
        out.append(
            Finding(UNDECIDABLE, where, here, f"'{keyword}' differs; the rules cannot compare it")
        )

    # type
    wt, rt = _types(writer), _types(reader)
    if rt is not None:
        if wt is None and "enum" not in writer and "const" not in writer:
            bad(f"the writer may send any type; the reader takes only {sorted(rt)}")
        elif wt is not None:
            allowed = rt | ({"integer"} if "number" in rt else set())
            extra = wt - allowed
            if extra:
                bad(f"the writer may send {sorted(extra)}; the reader takes only {sorted(rt)}")

    # enum / const
    if "enum" in reader or "const" in reader:
        accepted = reader["enum"] if "enum" in reader else [reader["const"]]
        sent = writer.get("enum", [writer["const"]] if "const" in writer else None)
        if sent is None:
            bad(f"the reader accepts only {accepted}; the writer is not limited to them")
        else:
            missing = [v for v in sent if not any(_same(v, a) for a in accepted)]
            if missing:
                bad(f"the writer may send {missing}, which the reader's enum lacks")

    # bounds
    for key in _LOWER:
        if key in reader and not (key in writer and writer[key] >= reader[key]):
            bad(f"the reader needs {key} {reader[key]}; the writer allows {writer.get(key, 'any')}")
    for key in _UPPER:
        if key in reader and not (key in writer and writer[key] <= reader[key]):
            bad(f"the reader needs {key} {reader[key]}; the writer allows {writer.get(key, 'any')}")

    # objects
    if (rt is None or "object" in rt) and any(
        k in reader for k in ("properties", "required", "additionalProperties")
    ):
        out += _objects(writer, reader, where, path)

    # arrays
    if "items" in reader:
        w_items = writer.get("items", True)
        out += accepts_all(w_items, reader["items"], where, f"{path}/*")
    return out


def _objects(
    writer: dict[str, Any], reader: dict[str, Any], where: str, path: str
) -> list[Finding]:
    out: list[Finding] = []
    w_props: dict[str, Any] = writer.get("properties", {})
    r_props: dict[str, Any] = reader.get("properties", {})
    w_required = set(writer.get("required", []))
    w_extra = writer.get("additionalProperties", True)
    r_extra = reader.get("additionalProperties", True)

    for name in reader.get("required", []):
        if name not in w_required:
            out.append(
                Finding(
                    INCOMPATIBLE,
                    where,
                    f"{path}/{name}",
                    "required by the reader, optional for the writer",
                )
            )
    for name, w_schema in w_props.items():
        target = r_props.get(name, r_extra)
        if target is False:
            out.append(
                Finding(
                    INCOMPATIBLE,
                    where,
                    f"{path}/{name}",
                    "the writer may send this field; the reader's object is closed to it",
                )
            )
        else:
            out += accepts_all(w_schema, target, where, f"{path}/{name}")
    if w_extra is not False:
        # An open writer may send any field it does not declare.
        for name, r_schema in r_props.items():
            if name not in w_props:
                out += accepts_all(w_extra, r_schema, where, f"{path}/{name}")
        if r_extra is False:
            out.append(
                Finding(
                    INCOMPATIBLE,
                    where,
                    path or "(root)",
                    "the writer's object is open (additionalProperties), the reader's closed",
                )
            )
        elif r_extra is not True and r_extra != {}:
            out += accepts_all(w_extra, r_extra, where, f"{path}/(additional)")
    return out
