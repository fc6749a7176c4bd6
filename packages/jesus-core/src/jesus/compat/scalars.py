"""Numbers and strings: the writer's range must lie within the reader's.

- bounds: the writer's lower bounds at least, its upper bounds at most, the reader's
  (exclusive bounds count as such; an integer writer's bounds are rounded inward first);
- `multipleOf`: the reader's must divide the writer's (an integer writer: divide 1);
- `minLength` / `maxLength` like bounds;
- `pattern`: the same pattern, or none in the reader, holds; any other change is an
  incompatibility only with a string the writer's pattern allows and the reader's refuses;
- `format`: an annotation from 2019-09 on; before that jsonschema-rs asserts it, and the
  reference validator cannot show a witness, so a changed format is undecidable.

Every difference found is checked for a witness (witness.refuted): none, and it is undecidable.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from jesus.compat.drafts import Schema
from jesus.compat.examples import examples
from jesus.compat.merge import fraction
from jesus.compat.report import UNDECIDABLE, Issue
from jesus.compat.resolve import Context
from jesus.compat.witness import refuted

_INF = Fraction(10**30)


def _lower(s: dict[str, Any], integer: bool) -> tuple[Fraction, bool]:
    """The lowest value `s` allows, and whether that value itself is excluded."""
    best, strict = -_INF, False
    if isinstance(s.get("minimum"), int | float):
        best = fraction(s["minimum"])
    if isinstance(s.get("exclusiveMinimum"), int | float):
        x = fraction(s["exclusiveMinimum"])
        if x >= best:
            best, strict = x, True
    if integer and best > -_INF:
        best, strict = (
            (Fraction(math.floor(best) + 1) if strict else Fraction(math.ceil(best))),
            False,
        )
    return best, strict


def _upper(s: dict[str, Any], integer: bool) -> tuple[Fraction, bool]:
    best, strict = _INF, False
    if isinstance(s.get("maximum"), int | float):
        best = fraction(s["maximum"])
    if isinstance(s.get("exclusiveMaximum"), int | float):
        x = fraction(s["exclusiveMaximum"])
        if x <= best:
            best, strict = x, True
    if integer and best < _INF:
        best, strict = (
            (Fraction(math.ceil(best) - 1) if strict else Fraction(math.floor(best))),
            False,
        )
    return best, strict


def numbers(
    w: dict[str, Any], r: dict[str, Any], cx: Context, here: str, integer: bool
) -> list[Issue]:
    out: list[Issue] = []
    wl, wls = _lower(w, integer)
    rl, rls = _lower(r, integer)
    if wl < rl or (wl == rl and rls and not wls):
        out.append(_bound(w, r, cx, here, ("minimum", "exclusiveMinimum")))
    wu, wus = _upper(w, integer)
    ru, rus = _upper(r, integer)
    if wu > ru or (wu == ru and rus and not wus):
        out.append(_bound(w, r, cx, here, ("maximum", "exclusiveMaximum")))
    step = r.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        mine = w.get("multipleOf")
        own = fraction(mine) if isinstance(mine, int | float) and mine > 0 else None
        unit = Fraction(1) if integer else None
        if not any(m is not None and (m / fraction(step)).denominator == 1 for m in (own, unit)):
            said = f"multipleOf {mine}" if own is not None else "any multiple"
            extra = [float(x) for x in (fraction(step) / 2, fraction(step) * Fraction(3, 2))] + [
                1,
                0.5,
            ]
            out.append(
                refuted(
                    here,
                    f"the reader needs multipleOf {step}; the writer allows {said}",
                    w,
                    {"multipleOf": step},
                    cx,
                    extra,
                )
            )
    return out


def _bound(
    w: dict[str, Any], r: dict[str, Any], cx: Context, here: str, keys: tuple[str, str]
) -> Issue:
    probe = {k: r[k] for k in keys if k in r}
    said = ", ".join(f"{k} {w[k]}" for k in keys if k in w) or "any"
    needs = ", ".join(f"{k} {v}" for k, v in probe.items())
    extra = examples({**probe, "type": "number"}, cx.reader)
    return refuted(here, f"the reader needs {needs}; the writer allows {said}", w, probe, cx, extra)


def strings(w: dict[str, Any], r: dict[str, Any], cx: Context, here: str) -> list[Issue]:
    out: list[Issue] = []
    if r.get("minLength", 0) > w.get("minLength", 0):
        out.append(_length(w, r, cx, here, "minLength"))
    if "maxLength" in r and not r["maxLength"] >= w.get("maxLength", math.inf):
        out.append(_length(w, r, cx, here, "maxLength"))
    pattern = r.get("pattern")
    if isinstance(pattern, str) and pattern != w.get("pattern"):
        said = f"'{w['pattern']}'" if "pattern" in w else "any string"
        out.append(
            refuted(
                here,
                f"the reader needs pattern '{pattern}'; the writer allows {said}",
                w,
                {"pattern": pattern},
                cx,
            )
        )
    out += format_change(w, r, cx, here)
    return out


def _length(w: dict[str, Any], r: dict[str, Any], cx: Context, here: str, key: str) -> Issue:
    probe: Schema = {key: r[key]}
    extra = ["a" * n for n in (max(r[key] - 1, 0), r[key] + 1)]
    return refuted(
        here,
        f"the reader needs {key} {r[key]}; the writer allows {w.get(key, 'any')}",
        w,
        probe,
        cx,
        extra,
    )


def format_change(w: dict[str, Any], r: dict[str, Any], cx: Context, here: str) -> list[Issue]:
    if "format" in r and r["format"] != w.get("format") and cx.reader.asserts_format:
        return [
            Issue(
                UNDECIDABLE,
                here,
                f"'format' {r['format']} in the reader (asserted by jsonschema-rs before 2019-09)",
            )
        ]
    return []
