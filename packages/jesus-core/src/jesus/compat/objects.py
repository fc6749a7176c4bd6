"""Objects. The schema either side applies to a property name is the conjunction of its
`properties` entry and every `patternProperties` it matches, or else `additionalProperties`
(`unevaluatedProperties` becomes that, where no applicator is left to evaluate names:
merge.settle). So:

- every name either side declares is compared with the schema each side applies to it; a
  name the writer declares `false` is never sent, whatever the reader says of it;
- names only a writer pattern covers meet the reader's schema for them: the same pattern's,
  and any reader pattern that may also match, or the reader's additionalProperties;
- the writer's additionalProperties (an open writer sends any undeclared name) meets the
  reader's additionalProperties and every reader pattern the writer lacks;
- `required`: what the reader requires, the writer must; `propertyNames`, `minProperties`,
  `maxProperties`; `dependentRequired`: what the reader needs beside a name, the writer must
  send beside it (or require, or never send the name); `dependentSchemas`: the writer,
  sending that name, must fit the reader's schema for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from jesus.compat import rules
from jesus.compat.drafts import Schema
from jesus.compat.examples import examples, first_valid, valid_examples
from jesus.compat.merge import both, canon, property_schema
from jesus.compat.regex import disjoint_patterns, strings_matching
from jesus.compat.report import UNDECIDABLE, Issue
from jesus.compat.resolve import Context
from jesus.compat.witness import in_object, refuted

_SPARE_NAMES = ("x", "zz", "extra", "_", "0", "A1", "é")


def compare(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue]:
    out: list[Issue] = []
    wp: dict[str, Any] = w.get("properties", {})
    rp: dict[str, Any] = r.get("properties", {})
    w_req = {n for n in w.get("required", []) if isinstance(n, str)}
    r_req = [n for n in r.get("required", []) if isinstance(n, str)]
    wpat: dict[str, Any] = w.get("patternProperties", {})
    rpat: dict[str, Any] = r.get("patternProperties", {})
    for pattern in [*wpat, *rpat]:
        try:
            re.compile(pattern)
        except re.error:
            return [
                Issue(
                    UNDECIDABLE,
                    path or "(root)",
                    f"'patternProperties' {pattern!r} is not a regex Python reads",
                )
            ]

    def sends(name: str) -> bool:
        return cx.writer.resolve(property_schema(w, name)) is not False

    for name in r_req:
        if name in w_req:
            continue
        if sends(name):
            out.append(
                refuted(
                    f"{path}/{name}",
                    "required by the reader, optional for the writer",
                    w,
                    {"required": [name]},
                    cx,
                    _without(w, name, cx),
                )
            )
        elif not sends(name):
            out.append(
                refuted(
                    f"{path}/{name}",
                    "required by the reader; the writer never sends it",
                    w,
                    {"required": [name]},
                    cx,
                )
            )
    for name in sorted(set(wp) | set(rp)):
        ws = property_schema(w, name)
        if not sends(name):
            continue
        sub = rules.compare(ws, property_schema(r, name), cx, f"{path}/{name}")
        out += in_object(sub, w, name, cx)
    for pattern, ws in wpat.items():
        readers = [rpat[pattern]] if pattern in rpat else [r.get("additionalProperties", True)]
        readers += [
            s for q, s in rpat.items() if q != pattern and not disjoint_patterns(q, pattern)
        ]
        names = [n for n in _names(pattern) if n not in wp and n not in rp]
        out += _class(w, r, ws, readers, names, f"{path}/({pattern})", cx)
    w_extra = w.get("additionalProperties", True)
    if cx.writer.resolve(w_extra) is not False:
        readers = [r.get("additionalProperties", True)]
        readers += [s for q, s in rpat.items() if q not in wpat]
        names = [n for n in _SPARE_NAMES if n not in wp and n not in rp and not _matches(wpat, n)]
        names += [
            n
            for q in rpat
            if q not in wpat
            for n in _names(q)
            if n not in wp and not _matches(wpat, n)
        ]
        out += _class(w, r, w_extra, readers, names, f"{path}/(additional)", cx)
    out += _names_and_counts(w, r, cx, path)
    out += _dependencies(w, r, cx, path, w_req, sends)
    return out


def _class(
    w: dict[str, Any],
    r: dict[str, Any],
    ws: Schema,
    readers: list[Schema],
    names: list[str],
    at: str,
    cx: Context,
) -> list[Issue]:
    """A class of names the writer may send with schema `ws`, and the reader schemas that may
    apply to them: each must take `ws`; a witness is an object with one such name."""
    out: list[Issue] = []
    for rs in readers:
        sub = rules.compare(ws, rs, cx, at)
        if not sub:
            continue
        named = [
            n
            for n in names
            if property_schema(r, n) is rs or canon(property_schema(r, n)) == canon(rs)
        ]
        if named:
            out += in_object(sub, w, named[0], cx)
        else:
            out += [Issue(i.kind, i.path, i.message) for i in sub]  # unwitnessed: undecidable
        if rs is False or rs is r.get("additionalProperties"):
            for issue in out:
                if issue.message == "the reader accepts nothing":
                    issue.message = (
                        "the writer's object is open (additionalProperties), the reader's closed"
                    )
    return out


def _names(pattern: str) -> list[str]:
    return list(strings_matching(pattern))


def _matches(patterns: dict[str, Any], name: str) -> bool:
    return any(re.search(p, name) for p in patterns)


def _without(w: dict[str, Any], name: str, cx: Context) -> list[Any]:
    return [
        {k: v for k, v in e.items() if k != name}
        for e in valid_examples(w, cx.writer, limit=10)
        if isinstance(e, dict)
    ]


def _names_and_counts(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue]:
    out: list[Issue] = []
    here = path or "(root)"
    if "propertyNames" in r:
        out += _property_names(w, r, cx, path)
    if r.get("minProperties", 0) > max(w.get("minProperties", 0), len(set(w.get("required", [])))):
        out.append(
            refuted(
                here,
                f"the reader needs minProperties {r['minProperties']}; the writer allows fewer",
                w,
                {"minProperties": r["minProperties"]},
                cx,
            )
        )
    if "maxProperties" in r and not r["maxProperties"] >= w.get("maxProperties", float("inf")):
        out.append(
            refuted(
                here,
                f"the reader needs maxProperties {r['maxProperties']}; the writer allows more",
                w,
                {"maxProperties": r["maxProperties"]},
                cx,
                _with_valid_values(w, _crowds(w, r["maxProperties"] + 1, cx), cx),
            )
        )
    return out


def _property_names(w: dict[str, Any], r: dict[str, Any], cx: Context, path: str) -> list[Issue]:
    """Every name the writer may send must be a string the reader's propertyNames accepts."""
    names = r["propertyNames"]
    closed = cx.writer.resolve(w.get("additionalProperties", True)) is False
    if closed and not w.get("patternProperties"):
        sent = [
            n
            for n in w.get("properties", {})
            if cx.writer.resolve(property_schema(w, n)) is not False
        ]
        refused = [n for n in sent if cx.reader.valid(names, n) is False]
        if not refused and all(cx.reader.valid(names, n) is True for n in sent):
            return []  # a closed writer sends only the names it declares
    else:
        mine = {"type": "string", **_as_dict(w.get("propertyNames", True))}
        if not rules.compare(mine, names, cx, f"{path}/(names)"):
            return []
        refused = [n for n in examples(mine, cx.writer) if isinstance(n, str)]
    shapes = [{n: None} for n in refused] + [
        {**e, n: None} for e in _without(w, "", cx)[:3] for n in refused[:5]
    ]
    return [
        refuted(
            path or "(root)",
            "the reader limits property names (propertyNames); the writer may send others",
            w,
            {"propertyNames": names},
            cx,
            _with_valid_values(w, shapes, cx),
        )
    ]


def _crowds(w: dict[str, Any], n: int, cx: Context) -> list[dict[str, Any]]:
    """Objects of `n` properties or more, from the writer's examples and spare names."""
    if n > len(_SPARE_NAMES):
        return []
    spare = dict.fromkeys(_SPARE_NAMES[:n])
    return [{**e, **spare} for e in _without(w, "", cx)[:3]] + [spare]


def _as_dict(s: Schema) -> dict[str, Any]:
    return s if isinstance(s, dict) else {} if s is True else {"not": {}}


def _with_valid_values(w: dict[str, Any], shapes: list[dict[str, Any]], cx: Context) -> list[Any]:
    """Objects with the given names, each value replaced by one the writer accepts there."""
    out = []
    for shape in shapes:
        obj = {}
        for name in shape:
            value = first_valid(property_schema(w, name), cx.writer)
            obj[name] = value[0] if value is not None else None
        out.append(obj)
    return out


def _dependencies(
    w: dict[str, Any],
    r: dict[str, Any],
    cx: Context,
    path: str,
    w_req: set[str],
    sends: Callable[[str], bool],
) -> list[Issue]:
    out: list[Issue] = []
    w_deps: dict[str, list[str]] = w.get("dependentRequired", {})
    for name, needed in r.get("dependentRequired", {}).items():
        if not sends(name):
            continue
        for other in needed:
            if other in w_req or other in w_deps.get(name, []):
                continue
            # Witnesses: writer objects that send `name`, then lose `other`.
            shapes = [{**e, name: None} for e in _without(w, other, cx)] + [{name: None}]
            extra = [
                {k: v for k, v in e.items() if k != other}
                for e in _with_valid_values(w, shapes, cx)
            ]
            out.append(
                refuted(
                    f"{path}/{other}",
                    f"the reader needs {other} whenever {name} is sent; "
                    f"the writer may send {name} without it",
                    w,
                    {"dependentRequired": {name: [other]}},
                    cx,
                    extra,
                )
            )
    w_schemas: dict[str, Any] = w.get("dependentSchemas", {})
    for name, needed in r.get("dependentSchemas", {}).items():
        if not sends(name) or canon(w_schemas.get(name)) == canon(needed):
            continue
        sending = both({**w, "required": sorted(w_req | {name})}, w_schemas.get(name, True))
        out += rules.compare(sending, needed, cx, path)  # the same object: the same path
    return out
