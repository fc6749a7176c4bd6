"""Event names and how listeners match them.

An event name is dot-separated segments of letters, digits, `_` and `-` (`user.created`).
A listener pattern is an event name (an exact match) or ends in `.*`: `user.*` matches every
event whose name starts with `user.` and has at least one more segment (`user.created`,
`user.profile.updated`), but not `user` itself.

An event reaches a listener as a call of the method `~PATTERN` on the listener's service (for
example `users.~billing.*`), with the event's name in the meta (`e`) and its data as the data.
"""

from __future__ import annotations

import re

LISTENER_PREFIX = "~"
_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def valid_event(name: str) -> bool:
    return bool(_NAME.match(name))


def valid_pattern(pattern: str) -> bool:
    if pattern.endswith(".*"):
        return valid_event(pattern[:-2])
    return valid_event(pattern)


def matches(pattern: str, event: str) -> bool:
    if pattern.endswith(".*"):
        return event.startswith(pattern[:-1]) and len(event) > len(pattern) - 1
    return pattern == event


def patterns_matching(event: str) -> list[str]:
    """Every listener pattern that matches `event`: itself and each of its prefixes with
    `.*` (`a.b.c`: `a.b.c`, `a.b.*`, `a.*`). A registry indexes listeners by pattern, so an
    emitter looks up these few keys instead of every listener."""
    parts = event.split(".")
    return [event] + [".".join(parts[:i]) + ".*" for i in range(len(parts) - 1, 0, -1)]


def listener_method(pattern: str) -> str:
    return LISTENER_PREFIX + pattern
