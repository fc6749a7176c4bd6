"""enum / const, `anyOf`, `oneOf`, `not`, `if` / `then` / `else`, and the `allOf` parts that did
not merge, on either side. Each step returns None when it does not apply, so rules.py tries
them in turn; all of them end in `rules.compare` on smaller pairs.

- A writer with an enum (or const, or only booleans and nulls) is finite: each value is
  validated against the reader, which decides exactly.
- A writer's `anyOf` / `oneOf`: every branch must fit (for `oneOf` that is sufficient; its
  exclusivity only removes instances).
- A reader's `anyOf`: some single branch must take the whole writer; `oneOf`: that branch,
  and every other one proven disjoint from the writer (else undecidable: exclusivity).
- A reader's `not`: the writer must be disjoint from it, proven by types, enums, consts or a
  property both require with disjoint values; a writer's `not` against a reader's: the reader's
  excluded schema must fit inside the writer's.
- `if` / `then` / `else`: decided when the writer always or never meets `if`, or when both
  branches decide the same way.
"""

from __future__ import annotations

from typing import Any

from jesus.compat import rules
from jesus.compat.drafts import Schema
from jesus.compat.examples import valid_examples
from jesus.compat.merge import both, strip, types_of
from jesus.compat.report import INCOMPATIBLE, UNDECIDABLE, Issue
from jesus.compat.resolve import Context, Unresolved

_ALL = {"null", "boolean", "object", "array", "number", "string"}
_LATE = ("unevaluatedProperties", "unevaluatedItems")


def finite(w: dict[str, Any]) -> list[Any] | None:
    """Every value writer `w` may send, when there are few: its enum, const, booleans, null."""
    if "const" in w:
        return [w["const"]]
    if "enum" in w and isinstance(w["enum"], list):
        return list(w["enum"])
    t = types_of(w)
    if t is not None and t <= {"null", "boolean"} and not _has_combinators(w):
        return ([None] if "null" in t else []) + ([False, True] if "boolean" in t else [])
    return None


def _has_combinators(s: dict[str, Any]) -> bool:
    return any(k in s for k in ("allOf", "anyOf", "oneOf", "not", "if"))


def enumerate_values(
    values: list[Any], w: Schema, r: Schema, cx: Context, here: str
) -> list[Issue]:
    refused: list[Any] = []
    unsure: list[Any] = []
    for value in values:
        if cx.writer.valid(w, value) is False:
            continue  # another writer keyword excludes it
        ok = cx.reader.valid(r, value)
        if ok is False:
            refused.append(value)
        elif ok is None:
            unsure.append(value)
    out = []
    if refused:
        out.append(
            Issue(
                INCOMPATIBLE,
                here,
                f"the writer may send {refused}, which the reader refuses",
                (refused[0],),
            )
        )
    if unsure:
        out.append(Issue(UNDECIDABLE, here, f"the reader's schema cannot be evaluated on {unsure}"))
    return out


def writer_branches(w: dict[str, Any], r: Schema, cx: Context, path: str) -> list[Issue] | None:
    for key in ("anyOf", "oneOf"):
        if key in w and isinstance(w[key], list):
            base = {k: v for k, v in w.items() if k != key}
            out: list[Issue] = []
            for branch in w[key]:
                out += rules.compare(both(base, branch), r, cx, path)
            return out
    return None


def writer_conditional(w: dict[str, Any], r: Schema, cx: Context, path: str) -> list[Issue] | None:
    if "if" not in w:
        return None
    base = {k: v for k, v in w.items() if k not in ("if", "then", "else")}
    # Over the writer, loosely: what meets `if` meets `then`; the rest meets `else`.
    met = both(both(base, w["if"]), w.get("then", True))
    return rules.compare(met, r, cx, path) + rules.compare(
        both(base, w.get("else", True)), r, cx, path
    )


def reader_parts(w: Schema, r: dict[str, Any], cx: Context, path: str) -> list[Issue] | None:
    """w within (a and b) exactly when w within a and w within b."""
    if "allOf" not in r:
        return None
    if any(k in r for k in _LATE):
        return _late(path, "allOf")
    base = {k: v for k, v in r.items() if k != "allOf"}
    out = rules.compare(w, base, cx, path)
    for part in r["allOf"]:
        out += rules.compare(w, part, cx, path)
    return out


def reader_branches(
    w: dict[str, Any], r: dict[str, Any], cx: Context, path: str
) -> list[Issue] | None:
    key = next((k for k in ("anyOf", "oneOf") if isinstance(r.get(k), list)), None)
    if key is None:
        return None
    if any(k in r for k in _LATE):
        return _late(path, key)
    here = path or "(root)"
    base = {k: v for k, v in r.items() if k != key}
    out = rules.compare(w, base, cx, path) if strip(base) else []
    results = [rules.compare(w, branch, cx, path) for branch in r[key]]
    fits = [i for i, res in enumerate(results) if not res]
    if fits:
        if key == "anyOf":
            return out
        others = [b for i, b in enumerate(r[key]) if i != fits[0]]
        if all(disjoint(w, b, cx) for b in others):
            return out
        found = _refusal(w, r, cx, [])
        if found is not None:
            return [
                *out,
                Issue(
                    INCOMPATIBLE,
                    here,
                    "more than one branch of the reader's oneOf accepts what the writer may send",
                    found,
                ),
            ]
        return [
            *out,
            Issue(
                UNDECIDABLE,
                here,
                f"'oneOf': branch {fits[0]} accepts the writer, but no other branch was "
                "proven disjoint from it (oneOf's exclusivity)",
            ),
        ]
    split = _by_type(w)
    if split is not None:
        for part in split:
            out += rules.compare(part, r, cx, path)
        return out
    found = _refusal(w, r, cx, [i for res in results for i in res])
    if found is not None:
        return [
            *out,
            Issue(
                INCOMPATIBLE,
                here,
                f"no branch of the reader's {key} accepts everything the writer may send",
                found,
            ),
        ]
    return [
        *out,
        Issue(
            UNDECIDABLE,
            here,
            f"'{key}': no single branch of the reader accepts every instance of the writer",
        ),
    ]


def _by_type(w: dict[str, Any]) -> list[dict[str, Any]] | None:
    """A writer of several types, one type at a time (a reader's branches often split so)."""
    t = types_of(w)
    types = _ALL if t is None else t
    if len(types) < 2:
        return None
    return [{**w, "type": x} for x in sorted(types)]


def _refusal(w: Schema, r: Schema, cx: Context, issues: list[Issue]) -> tuple[Any] | None:
    """An instance the writer sends and the whole reader refuses, among the branches'
    witnesses and the writer's examples."""
    candidates = [i.witness[0] for i in issues if i.witness is not None]
    candidates += valid_examples(w, cx.writer, limit=40)
    for value in candidates:
        if cx.writer.valid(w, value) is True and cx.reader.valid(r, value) is False:
            return (value,)
    return None


def reader_conditional(
    w: dict[str, Any], r: dict[str, Any], cx: Context, path: str
) -> list[Issue] | None:
    if "if" not in r:
        return None
    if any(k in r for k in _LATE):
        return _late(path, "if")
    base = {k: v for k, v in r.items() if k not in ("if", "then", "else")}
    out = rules.compare(w, base, cx, path) if strip(base) else []
    then, other = r.get("then", True), r.get("else", True)
    if not rules.compare(w, r["if"], cx, path):
        return out + rules.compare(w, then, cx, path)  # the writer always meets `if`
    if disjoint(w, r["if"], cx):
        return out + rules.compare(w, other, cx, path)  # ... or never does
    results = rules.compare(w, then, cx, path) + rules.compare(w, other, cx, path)
    if not results:
        return out
    found = _refusal(w, r, cx, results)
    here = path or "(root)"
    if found is not None:
        return [
            *out,
            Issue(
                INCOMPATIBLE,
                here,
                "the reader's if/then/else refuses what the writer may send",
                found,
            ),
        ]
    return [*out, Issue(UNDECIDABLE, here, "'if': its branches decide differently for the writer")]


def reader_not(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue] | None:
    """w within (base and not Y): w within base, and w disjoint from Y."""
    if "not" not in r:
        return None
    base = {k: v for k, v in r.items() if k != "not"}
    out = rules.compare(w, base, cx, path) if strip(base) else []
    excluded = r["not"]
    if "not" in w and not _compare_swapped(excluded, w["not"], cx, path):
        return out  # what the reader excludes, the writer excludes too
    if disjoint(w, excluded, cx):
        return out
    here = path or "(root)"
    found = _refusal(w, r, cx, [])
    if found is not None:
        return [
            *out,
            Issue(
                INCOMPATIBLE, here, "the writer may send what the reader's 'not' excludes", found
            ),
        ]
    return [
        *out,
        Issue(
            UNDECIDABLE,
            here,
            "'not': the writer was not proven disjoint from what the reader excludes",
        ),
    ]


def _compare_swapped(excluded: Schema, writer_not: Schema, cx: Context, path: str) -> list[Issue]:
    """Is the reader's excluded schema within the writer's? (not A within not B iff B within A.)"""
    swapped = Context(cx.reader, cx.writer, cx.where, depth=cx.depth)
    return rules.compare(excluded, writer_not, swapped, path)


def without_writer_not(w: dict[str, Any], cx: Context) -> dict[str, Any]:
    """A writer's `not`, kept where it narrows the types, else dropped (the writer is then
    taken as sending more than it does: safe for a verdict of compatible)."""
    if "not" not in w:
        return w
    rest = {k: v for k, v in w.items() if k != "not"}
    excluded = cx.writer.resolve(w["not"])
    if isinstance(excluded, dict) and set(strip(excluded)) == {"type"}:
        kept = _ALL - (types_of(excluded) or set())
        if "integer" in (types_of(excluded) or set()):
            kept |= {"number"}  # not-integer still sends 0.5
        narrowed = both(rest, {"type": sorted(kept)})
        return narrowed if isinstance(narrowed, dict) else rest
    return rest


def disjoint(a: Schema, b: Schema, cx: Context) -> bool:
    """Proven: no instance is valid under writer subschema `a` and reader subschema `b`."""
    a, b = cx.writer.resolve(a), cx.reader.resolve(b)
    if isinstance(a, Unresolved) or isinstance(b, Unresolved):
        return False
    if a is False or b is False:
        return True
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    a, b = rules.flatten(a, cx.writer), rules.flatten(b, cx.reader)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return a is False or b is False
    ta, tb = types_of(a), types_of(b)
    if ta is not None and tb is not None and not both({"type": sorted(ta)}, {"type": sorted(tb)}):
        return True
    values = finite(a)
    if values is not None and all(cx.reader.valid(b, v) is False for v in values):
        return True
    values = finite(b)
    if values is not None and all(cx.writer.valid(a, v) is False for v in values):
        return True
    if ta == {"object"} or tb == {"object"}:
        shared = set(a.get("required", [])) & set(b.get("required", []))
        for name in shared:
            wa = a.get("properties", {}).get(name, True)
            rb = b.get("properties", {}).get(name, True)
            if disjoint(wa, rb, cx):
                return True
    return False


def _late(path: str, keyword: str) -> list[Issue]:
    return [
        Issue(
            UNDECIDABLE,
            path or "(root)",
            f"'unevaluatedProperties' / 'unevaluatedItems' beside '{keyword}' in the reader",
        )
    ]
