"""Version ranges a caller pins a service to: `client.call("calc@^1.2.add", ...)`,
`call(..., version="^1.2")` or `Client(versions={"calc": "^1.2"})`.

The grammar is npm's, the one most people know:

- `1.2.3` (or `=1.2.3`) exactly that version; `1.2`, `1.2.x`, `1`, `1.x` every version it
  starts with;
- `^1.2.3` compatible with it: the same leftmost non-zero part (`>=1.2.3 <2.0.0`;
  `^0.2.3` is `>=0.2.3 <0.3.0`);
- `~1.2.3` the same minor (`>=1.2.3 <1.3.0`; `~1` is `>=1.0.0 <2.0.0`);
- comparators `>=`, `>`, `<=`, `<` and `=`, joined by commas or spaces (`>=1.2, <2`), all of
  which must hold;
- `*` or the empty string: any version; `latest`: only the highest version running.

A version is compared by its numeric parts (`1.2.3`); a pre-release or build suffix
(`1.3.0-rc.1`, `+build`) counts as that release. A version that is not numeric ("dev")
matches only `*`, `latest`, or itself written exactly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from jesus.errors import ConfigurationError

LATEST = "latest"
Version = tuple[int, int, int]

_VERSION = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:[-+].*)?$")
_PARTIAL = re.compile(r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?$")
_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|\^|~)?\s*([^<>=^~].*)$")
_TESTS: dict[str, Callable[[Version, Version], bool]] = {
    ">=": lambda v, b: v >= b,
    ">": lambda v, b: v > b,
    "<=": lambda v, b: v <= b,
    "<": lambda v, b: v < b,
    "=": lambda v, b: v == b,
}


def parse_version(text: str) -> Version | None:
    """The numeric release of a version string, or None when it has none."""
    found = _VERSION.match(text.strip())
    if found is None:
        return None
    major, minor, patch = found.groups()
    return int(major), int(minor or 0), int(patch or 0)


def _partial(text: str, whole: str) -> list[int]:
    found = _PARTIAL.match(text)
    if found is None:
        raise ConfigurationError(f"version range {whole!r}: {text!r} is not a version")
    parts: list[int] = []
    for part in found.groups():
        if part is None or not part.isdigit():
            break  # x, * or absent: any from here on
        parts.append(int(part))
    return parts


def _bump(parts: Sequence[int], at: int) -> Version:
    """The first version past every one that starts with parts[:at + 1]."""
    return _full([*parts[:at], parts[at] + 1])


def _full(parts: Sequence[int]) -> Version:
    padded = [*parts, 0, 0, 0]
    return padded[0], padded[1], padded[2]


@dataclass(frozen=True)
class VersionRange:
    """A parsed range: every (comparator, version) of `bounds` must hold."""

    text: str
    bounds: tuple[tuple[str, Version], ...] = ()
    latest: bool = False
    exact: str | None = None  # a version that is not numeric, matched as written

    @classmethod
    def parse(cls, text: str) -> VersionRange:
        whole = text.strip()
        if whole in ("", "*", "x", "X"):
            return cls(whole)
        if whole == LATEST:
            return cls(whole, latest=True)
        if re.fullmatch(r"=?[A-Za-z][\w.\-]*", whole) and not _PARTIAL.match(whole.lstrip("=")):
            return cls(whole, exact=whole.lstrip("="))
        bounds: list[tuple[str, Version]] = []
        joined = re.sub(r"(>=|<=|>|<|=|\^|~)\s+", r"\1", whole)  # ">= 1.2" is one term
        for term in re.split(r"[,\s]+", joined):
            if term:
                bounds += _bounds(term, whole)
        return cls(whole, tuple(bounds))

    def matches(self, version: str) -> bool:
        if self.exact is not None:
            return version == self.exact
        if not self.bounds:
            return True
        numeric = parse_version(version)
        if numeric is None:
            return False
        return all(_TESTS[op](numeric, bound) for op, bound in self.bounds)

    def choose(self, versions: Sequence[str]) -> set[str]:
        """Which of the versions running it allows (`latest`: the highest of them)."""
        if not self.latest:
            return {v for v in versions if self.matches(v)}
        ranked = [(parse_version(v), v) for v in versions]
        numeric = [(n, v) for n, v in ranked if n is not None]
        if not numeric:
            return set(versions)
        top = max(n for n, _ in numeric)
        return {v for n, v in numeric if n == top}

    def __str__(self) -> str:
        return self.text or "*"


def _bounds(term: str, whole: str) -> list[tuple[str, Version]]:
    found = _COMPARATOR.match(term)
    if found is None:
        raise ConfigurationError(f"version range {whole!r}: {term!r} is not a comparator")
    op, rest = found.group(1) or "", found.group(2).strip()
    parts = _partial(rest, whole)
    if op in (">=", ">", "<=", "<"):
        if not parts:
            raise ConfigurationError(f"version range {whole!r}: {term!r} needs a version")
        if op == ">" and len(parts) < 3:
            return [(">=", _bump(parts, len(parts) - 1))]
        if op == "<=" and len(parts) < 3:
            return [("<", _bump(parts, len(parts) - 1))]
        return [(op, _full(parts))]
    if not parts:
        return []  # "x", "=*": any
    low = _full(parts)
    if op == "^":
        nonzero = next((i for i, p in enumerate(parts) if p != 0), len(parts) - 1)
        return [(">=", low), ("<", _bump(parts, nonzero))]
    if op == "~":
        return [(">=", low), ("<", _bump(parts, min(1, len(parts) - 1)))]
    if len(parts) == 3:
        return [("=", low)]
    return [(">=", low), ("<", _bump(parts, len(parts) - 1))]


def split_pinned(service: str) -> tuple[str, str | None]:
    """`calc@^1.2` -> ("calc", "^1.2"); `calc` -> ("calc", None)."""
    name, sep, pinned = service.partition("@")
    return name, (pinned if sep else None)
