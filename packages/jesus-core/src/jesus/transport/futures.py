"""A one-shot result a task waits for and a reader fills in, and the clock: the cheapest kind
per backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio

from jesus.transport.spawner import running_asyncio_loop


class EventFuture:
    """The part of asyncio.Future a call waits on, on any backend. Unlike an asyncio future,
    a wait on it may be cancelled and started again (retransmission loops do that)."""

    __slots__ = ("_error", "_event", "_value")

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._value: Any = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._event.is_set()

    def set_result(self, value: Any) -> None:
        self._value = value
        self._event.set()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._event.set()

    def __await__(self) -> Any:
        yield from self._event.wait().__await__()
        if self._error is not None:
            raise self._error
        return self._value


def future_factory() -> Callable[[], Any]:
    """A bare asyncio future on asyncio (an anyio Event costs several times more), an
    EventFuture elsewhere. Call from inside the event loop."""
    loop = running_asyncio_loop()
    return loop.create_future if loop is not None else EventFuture


def now() -> float:
    """`anyio.current_time()`, without its backend look-up on asyncio (per call, on the
    server's path of every request)."""
    loop = asyncio._get_running_loop()
    return loop.time() if loop is not None else anyio.current_time()


def clock_factory() -> Callable[[], float]:
    """The anyio clock without its per-call backend look-up (which costs more than the
    reading): the loop's own `time` on asyncio. Call from inside the event loop."""
    loop = running_asyncio_loop()
    return loop.time if loop is not None else anyio.current_time
