"""Strings that match a `pattern`, built from the regex's parse tree: the shortest one, then
variations (each alternative, one more repetition). Python's regex dialect stands in for
ECMA-262's; every string is checked by the validator afterwards anyway.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any

_parser: Any
try:  # the parser behind `re` (3.11+); typeshed does not describe it
    _parser = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - older layouts
    _parser = None

_CLASSES = {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " "}
_NOT_CLASSES = {"CATEGORY_NOT_DIGIT": "a", "CATEGORY_NOT_WORD": "-", "CATEGORY_NOT_SPACE": "a"}


def strings_matching(pattern: str, limit: int = 6) -> Iterator[str]:
    """Up to `limit` distinct strings that `re.search(pattern, s)` accepts."""
    if _parser is None:
        return
    try:
        tree = _parser.parse(pattern)
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return
    seen: set[str] = set()
    for variant in range(limit * 2):
        try:
            s = _build(list(tree), variant)
        except (_Unsupported, RecursionError):
            return
        if s not in seen and compiled.search(s):
            seen.add(s)
            yield s
            if len(seen) >= limit:
                return


class _Unsupported(Exception):
    pass


def _build(items: list[Any], variant: int) -> str:
    out = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "NOT_LITERAL":
            out.append("a" if chr(arg) != "a" else "b")
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_char_in(arg, variant))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, sub = arg
            count = low + (1 if variant % 2 and (high is None or high > low) else 0)
            out.append("".join(_build(list(sub), variant // 2) for _ in range(count)))
        elif name == "SUBPATTERN":
            out.append(_build(list(arg[-1]), variant))
        elif name == "BRANCH":
            branches = arg[1]
            out.append(_build(list(branches[variant % len(branches)]), variant // len(branches)))
        elif name == "ATOMIC_GROUP":
            out.append(_build(list(arg), variant))
        elif name in ("AT", "ASSERT", "ASSERT_NOT"):
            continue  # anchors and look-arounds: the final search() decides
        else:
            raise _Unsupported(name)  # back-references, conditionals
    return "".join(out)


def _char_in(items: list[Any], variant: int) -> str:
    if items and str(items[0][0]) == "NEGATE":
        excluded = {chr(a) for op, a in items[1:] if str(op) == "LITERAL"}
        return next(c for c in "a0-_ zZ" if c not in excluded)
    choices: list[str] = []
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            choices.append(chr(arg))
        elif name == "RANGE":
            choices.append(chr(arg[0]))
        elif name == "CATEGORY":
            choices.append(_CLASSES.get(str(arg), _NOT_CLASSES.get(str(arg), "a")))
    if not choices:
        raise _Unsupported("IN")
    return choices[variant % len(choices)]


def disjoint_patterns(a: str, b: str) -> bool:
    """Proven: no string matches both, as both are anchored at the start with literal
    prefixes that differ (`^S_` and `^I_`)."""
    pa, pb = _anchored_prefix(a), _anchored_prefix(b)
    if pa is None or pb is None:
        return False
    return not (pa.startswith(pb) or pb.startswith(pa))


def _anchored_prefix(pattern: str) -> str | None:
    if _parser is None:
        return None
    try:
        items = list(_parser.parse(pattern))
    except (re.error, RecursionError, OverflowError):
        return None
    if not items or str(items[0][0]) != "AT" or str(items[0][1]) != "AT_BEGINNING":
        return None
    prefix = ""
    for op, arg in items[1:]:
        if str(op) != "LITERAL":
            break
        prefix += chr(arg)
    return prefix if "(?" not in pattern and "|" not in pattern else None
