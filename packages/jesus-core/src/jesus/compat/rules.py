"""Does every instance a writer's schema allows validate under a reader's schema?

`accepts_all(writer, reader)` answers with findings; none means compatible. How it decides,
rule by rule, is docs/compatibility.md; each rule has cases in tests/core/test_compat*.py.

Two principles keep it honest. It may over-approximate the writer (ignore a writer keyword it
cannot use) and must never over-approximate the reader, so a verdict of compatible holds. And
it claims an incompatibility only with a witness, an instance checked with the real validator
against both schemas (witness.py); without one the finding is undecidable, naming the keyword.

This module resolves and flattens both sides and dispatches; the combinators, objects, arrays
and scalars have a module each.
"""

from __future__ import annotations

import json
from typing import Any

from jesus.compat import arrays, combinators, objects, scalars
from jesus.compat.drafts import Schema
from jesus.compat.examples import first_valid
from jesus.compat.merge import canon, conjoin, settle, strip, types_of
from jesus.compat.report import INCOMPATIBLE, UNDECIDABLE, Finding, Issue
from jesus.compat.resolve import Context, Doc, Unresolved
from jesus.compat.witness import refuted, verified

_MAX_DEPTH = 48
FAILED = "the rules failed on this pair"
# What `plain` and the modules it calls read, with what is no assertion (`then` without `if`
# is ignored by validators). Anything else left in a reader makes a finding undecidable.
_UNDERSTOOD = frozenset(
    {"type", "enum", "const", "format", "then", "else", "$schema", "$id", "$anchor"}
    | {"$defs", "definitions", "$comment", "minimum", "maximum", "exclusiveMinimum"}
    | {"exclusiveMaximum", "multipleOf", "minLength", "maxLength", "pattern", "properties"}
    | {"required", "additionalProperties", "patternProperties", "propertyNames"}
    | {"minProperties", "maxProperties", "dependentRequired", "dependentSchemas", "items"}
    | {"prefixItems", "minItems", "maxItems", "uniqueItems", "contains", "minContains"}
    | {"maxContains"}
)
_TYPES = ("null", "boolean", "object", "array", "number", "string")


def accepts_all(writer: Any, reader: Any, where: str = "", path: str = "") -> list[Finding]:
    """Findings for instances valid under `writer` that `reader` may refuse (none: compatible)."""
    cx = Context(Doc(writer), Doc(reader), where)
    try:
        issues = compare(cx.writer.root, cx.reader.root, cx, path)
    except Exception as exc:  # a schema the rules trip on must not stop a start
        message = f"{FAILED}: {type(exc).__name__}: {exc}"
        return [Finding(UNDECIDABLE, where, path or "(root)", message)]
    out: list[Finding] = []
    seen: set[tuple[str, str, str]] = set()
    for issue in issues:
        issue = verified(issue, cx)
        key = (issue.kind, issue.path, issue.message)
        if key not in seen:
            seen.add(key)
            witness = canon_witness(issue.witness) if issue.kind == INCOMPATIBLE else None
            out.append(Finding(issue.kind, where, issue.path, issue.message, witness))
    return out


def canon_witness(witness: tuple[Any] | None) -> str | None:
    return None if witness is None else json.dumps(witness[0], ensure_ascii=False)


def undecidable(path: str, message: str) -> list[Issue]:
    return [Issue(UNDECIDABLE, path or "(root)", message)]


def compare(w: Schema, r: Schema, cx: Context, path: str) -> list[Issue]:
    """Issues for instances of writer subschema `w` that reader subschema `r` may refuse."""
    w, r = cx.writer.resolve(w), cx.reader.resolve(r)
    for side in (w, r):
        if isinstance(side, Unresolved):
            return undecidable(path, f"'{side.keyword}' {side.target} {side.reason}")
    key = (id(w), id(r))
    if key in cx.active:
        if cx.active[key] == path:  # met again without descending into the instance
            return undecidable(path, "a cycle of references that never descends")
        return []  # a recursive schema met again further down: holds if the rest does
    if cx.depth > _MAX_DEPTH:
        return undecidable(path, "the schemas nest too deeply to compare")
    cx.active[key] = path
    cx.depth += 1
    try:
        return _compare(w, r, cx, path)
    finally:
        del cx.active[key]
        cx.depth -= 1


def flatten(node: Schema, doc: Doc) -> Schema:
    """`node` with its `allOf` (and the `allOf` a `$ref` with siblings became) merged into
    one schema where the parts combine; parts that do not stay in `allOf`."""
    node = strip(node)
    if not isinstance(node, dict) or "allOf" not in node:
        return settle(node)
    base = {k: v for k, v in node.items() if k != "allOf"}
    late = {k: base.pop(k) for k in ("unevaluatedProperties", "unevaluatedItems") if k in base}
    merged: Schema = base
    rest: list[Schema] = []
    for part in node["allOf"]:
        target = doc.resolve(part)
        target = flatten(target, doc) if not isinstance(target, Unresolved) else part
        joined = conjoin(merged, target) if not isinstance(target, Unresolved) else None
        if joined is None:
            rest.append(part)
        else:
            merged = joined
    if merged is False:
        return False
    if merged is True:
        merged = {}
    out = {**merged, **late} if isinstance(merged, dict) else merged
    if rest and isinstance(out, dict):
        out["allOf"] = rest
    return settle(out)


def _compare(w: Schema, r: Schema, cx: Context, path: str) -> list[Issue]:
    here = path or "(root)"
    if w is False or r is True or strip(r) == {}:
        return []
    same = canon(w) == canon(r)
    if same and ("$ref" not in canon(w) or cx.writer.key == cx.reader.key):
        return []  # a `$ref` means the same only within the same document
    if w is True:
        w = {}
    if not isinstance(w, dict) or not isinstance(r, dict | bool):
        return _not_a_schema(w, r, here)
    w, r = flatten(w, cx.writer), flatten(r, cx.reader)
    if w is False:
        return []
    if r is False or (isinstance(r, dict) and r.get("type") == []):
        found = first_valid(w, cx.writer)
        if found is None:
            return undecidable(
                here, "the reader accepts nothing; no instance of the writer's was found"
            )
        return [Issue(INCOMPATIBLE, here, "the reader accepts nothing", found)]
    if r is True or r == {}:
        return []
    if not isinstance(w, dict) or not isinstance(r, dict):
        return _not_a_schema(w, r, here)
    values = combinators.finite(w)
    if values is not None:
        return combinators.enumerate_values(values, w, r, cx, here)
    for step in (
        combinators.writer_branches,
        combinators.writer_conditional,
        combinators.reader_parts,
        combinators.reader_branches,
        combinators.reader_conditional,
        combinators.reader_not,
    ):
        issues = step(w, r, cx, path)
        if issues is not None:
            return issues
    w = combinators.without_writer_not(w, cx)
    return plain(w, r, cx, path)


def _not_a_schema(w: Any, r: Any, here: str) -> list[Issue]:
    odd = w if not isinstance(w, dict | bool) else r
    hint = " (draft-07's 'items' list, read as 2020-12 for want of '$schema'?)"
    said = f"a {type(odd).__name__} where a schema belongs{hint if isinstance(odd, list) else ''}"
    return undecidable(here, said)


def plain(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue]:
    """Schemas without combinators: compared type by type, then the reader's enum."""
    here = path or "(root)"
    unknown = sorted(k for k in r if k not in _UNDERSTOOD)
    if unknown:
        # A reader keyword the rules do not read might refuse anything: only a witness decides.
        said = ", ".join(map(repr, unknown))
        return [refuted(here, f"{said} in the reader, which the rules do not read there", w, r, cx)]
    out: list[Issue] = []
    wt = types_of(w)
    writer_types = set(_TYPES) if wt is None else wt
    rt = types_of(r)
    refused: list[str] = []
    for t in sorted(writer_types):
        if rt is not None and not _takes(rt, t):
            refused.append(t)
            continue
        if t in ("number", "integer"):
            integer = t == "integer" or (rt is not None and "number" not in rt)
            if t == "number" and rt is not None and "number" not in rt:
                refused.append("number")
                continue
            out += scalars.numbers({**w, "type": t}, r, cx, here, integer)
        elif t == "string":
            out += scalars.strings({**w, "type": t}, r, cx, here)
        elif t == "object":
            out += objects.compare({**w, "type": t}, r, cx, path)
        elif t == "array":
            out += arrays.compare({**w, "type": t}, r, cx, path)
    if refused:
        said = "any type" if wt is None else str(sorted(refused))
        probe = {"type": r["type"]}
        extra = [v for kind in refused for v in _samples(kind)]
        out.append(
            refuted(
                here,
                f"the writer may send {said}; the reader takes only {sorted(rt or [])}",
                w,
                probe,
                cx,
                extra,
            )
        )
    if "enum" in r or "const" in r:
        accepted = r["enum"] if "enum" in r else [r["const"]]
        probe = {k: r[k] for k in ("enum", "const") if k in r}
        out.append(
            refuted(
                here,
                f"the reader accepts only {accepted}; the writer is not limited to them",
                w,
                probe,
                cx,
            )
        )
    return out


def _takes(reader_types: set[str], t: str) -> bool:
    return t in reader_types or (t == "integer" and "number" in reader_types)


_SAMPLES: dict[str, list[Any]] = {
    "null": [None],
    "boolean": [False, True],
    "object": [{}],
    "array": [[]],
    "number": [0.5, 1.5],
    "integer": [0, 1],
    "string": ["", "a"],
}


def _samples(t: str) -> list[Any]:
    return _SAMPLES[t]
