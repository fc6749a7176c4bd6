"""Call middleware: code that wraps every call on the way out (client) or in (server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from jesus.messages import Meta, ResponseMode

__all__ = ["CallInfo", "Middleware", "NextCall", "chain"]


@dataclass(slots=True)
class CallInfo:
    """What a middleware sees of one call. `meta` may be changed (e.g. a traceparent added)."""

    service: str
    method: str
    data: Any
    meta: Meta
    mode: ResponseMode
    channel: str
    # Instances the call may go to, in order; the client fills it, middleware leaves it be.
    route: Any = None
    # Server side: who the call is proven to come from (jesus.security.caller.Caller).
    caller: Any = None
    # An event's delivery: the listener group it goes to (both sides); None for a call.
    group: str | None = None
    # Server side: the request's size in bytes as it came (encoded, decompressed); 0 unknown.
    size: int = 0
    # Client side, a stream: when its deadline passes on the anyio clock (None: none), so
    # that a stream closed at its deadline can be told from one the consumer left.
    deadline: float | None = None


NextCall = Callable[[CallInfo], Awaitable[Any]]


class Middleware:
    """Subclass and override either hook. The default passes the call on unchanged."""

    name: str = "middleware"

    async def client(self, call: CallInfo, call_next: NextCall) -> Any:
        return await call_next(call)

    async def server(self, call: CallInfo, call_next: NextCall) -> Any:
        return await call_next(call)


def chain(middleware: Sequence[Middleware], side: str, innermost: NextCall) -> NextCall:
    """Compose the `side` ("client" or "server") hooks around `innermost`, first outermost."""
    handler = innermost
    for mw in reversed(middleware):
        hook = getattr(mw, side)
        if getattr(type(mw), side) is getattr(Middleware, side):
            continue  # not overridden: skip the extra await

        def wrap(call: CallInfo, _hook: Any = hook, _next: NextCall = handler) -> Awaitable[Any]:
            return _hook(call, _next)  # type: ignore[no-any-return]

        handler = wrap
    return handler
