"""The call being handled, so that calls made while handling it inherit its corrid."""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable

from jesus.messages import Meta
from jesus.security.caller import Caller
from jesus.transport.futures import effective_deadline, now

current_meta: contextvars.ContextVar[Meta | None] = contextvars.ContextVar(
    "jesus_current_meta", default=None
)
# Absolute deadline (anyio clock) of the call being handled, None when it has none.
current_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "jesus_current_deadline", default=None
)

# Who the call being handled comes from, as proven (not the meta's self-declared `from`).
proven_caller: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "jesus_current_caller", default=None
)


def current_call() -> Meta | None:
    """The meta of the call this task is handling, or None outside a handler."""
    return current_meta.get()


def current_caller() -> Caller | None:
    """Who the call this task is handling comes from, as its certificate, seal or unix peer
    credentials prove it; None outside a handler."""
    return proven_caller.get()


def remaining_seconds(
    timeout: float | None,
    clock: Callable[[], float] = now,
    scopes_deadline: Callable[[], float] = effective_deadline,
) -> float | None:
    """Time left before the nearest of `timeout`, the enclosing cancel scopes' deadline and
    the deadline of the call being handled. `clock` and `scopes_deadline` may be bound ones
    (`clock_factory`, `deadline_factory`)."""
    deadline = scopes_deadline()
    inherited = current_deadline.get()
    if inherited is not None:
        deadline = min(deadline, inherited)
    left = deadline - clock() if math.isfinite(deadline) else None
    if timeout is not None:
        left = timeout if left is None else min(left, timeout)
    return left
