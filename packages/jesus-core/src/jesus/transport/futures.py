"""A one-shot result a task waits for and a reader fills in, and the clock: the cheapest kind
per backend."""

from __future__ import annotations

import asyncio
import math
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
        if not self._event.is_set():
            self._value = value
            self._event.set()

    def set_exception(self, error: BaseException) -> None:
        if not self._event.is_set():
            self._error = error
            self._event.set()

    def __await__(self) -> Any:
        yield from self._event.wait().__await__()
        if self._error is not None:
            raise self._error
        return self._value


class TrioFuture:
    """EventFuture on trio's own low-level parking (`wait_task_rescheduled`), without the
    Event and parking lot an anyio Event brings. A wait may be cancelled and started again."""

    __slots__ = ("_done", "_error", "_task", "_value")

    def __init__(self) -> None:
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._task: Any = None  # the task waiting, if one is

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        if not self._done:
            self._value = value
            self._wake()

    def set_exception(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        self._done = True
        task, self._task = self._task, None
        if task is not None:
            _trio.reschedule(task)

    async def _wait(self) -> Any:
        lowlevel = _trio
        if not self._done:
            self._task = lowlevel.current_task()

            def abort(_: Any) -> Any:
                self._task = None
                return lowlevel.Abort.SUCCEEDED

            await lowlevel.wait_task_rescheduled(abort)
        else:
            await lowlevel.checkpoint()  # as a wait on a set Event: still a checkpoint
        if self._error is not None:
            raise self._error
        return self._value

    def __await__(self) -> Any:
        return self._wait().__await__()


def future_factory() -> Callable[[], Any]:
    """A bare asyncio future on asyncio (an anyio Event costs several times more), a
    TrioFuture on trio, an EventFuture elsewhere. Call from inside the event loop."""
    loop = running_asyncio_loop()
    if loop is not None:
        return loop.create_future
    return TrioFuture if _on_trio() else EventFuture


# trio.lowlevel once trio was seen running (imported then, not by every asyncio user).
_trio: Any = None
# The clock and the effective deadline off asyncio: anyio's, or trio's own once seen (the
# same values, without anyio's backend look-up on every call).
_other_clock: Callable[[], float] = anyio.current_time
_other_deadline: Callable[[], float] = anyio.current_effective_deadline


def _on_trio() -> bool:
    global _trio, _other_clock, _other_deadline
    try:
        import trio
        import trio.lowlevel

        trio.lowlevel.current_task()  # raises outside trio
    except (ImportError, RuntimeError):
        return False
    _trio = trio.lowlevel
    _other_clock, _other_deadline = trio.current_time, trio.current_effective_deadline
    return True


def now() -> float:
    """`anyio.current_time()`, without its backend look-up (per call, on the server's path
    of every request)."""
    loop = asyncio._get_running_loop()
    return loop.time() if loop is not None else _other_clock()


def effective_deadline() -> float:
    """`anyio.current_effective_deadline()`; on trio without anyio's backend look-up. (A
    look-up of the running asyncio loop is a system call on Python 3.11: getpid.)"""
    if _trio is None or asyncio._get_running_loop() is not None:
        return anyio.current_effective_deadline()
    return _other_deadline()


def deadline_factory() -> Callable[[], float]:
    """`anyio.current_effective_deadline` without its three look-ups of the running loop
    (each a getpid on Python 3.11; together more than a tenth of a small call's client CPU):
    on asyncio, the same walk over the current task's cancel scopes, through the task found
    on the loop bound here. It reads anyio's table of task states, which is not public: the
    walk is checked against anyio's own answer here, and anyio's is used when the table is
    not there or the two disagree. Call from inside the event loop, in a task."""
    loop = running_asyncio_loop()
    if loop is None:
        return _other_deadline if _on_trio() else anyio.current_effective_deadline
    read = _scope_walk(loop)
    if read is None:
        return anyio.current_effective_deadline
    try:
        # A scope to read the walk in, not to wait in.
        with anyio.CancelScope(deadline=loop.time() + 3600):  # noqa: ASYNC100
            agrees = read() == anyio.current_effective_deadline()
    except (AttributeError, TypeError):  # anyio's internals moved
        agrees = False
    return read if agrees else anyio.current_effective_deadline


def _scope_walk(loop: asyncio.AbstractEventLoop) -> Callable[[], float] | None:
    try:
        from anyio._backends._asyncio import _task_states
    except ImportError:
        return None
    current_task = asyncio.current_task
    inf = math.inf

    def read() -> float:
        # anyio's AsyncIOBackend.current_effective_deadline, step for step.
        task = current_task(loop)
        state = None if task is None else _task_states.get(task)
        if state is None:
            return inf
        scope = state.cancel_scope
        deadline = inf
        while scope is not None:
            if scope._deadline < deadline:
                deadline = scope._deadline
            if scope._cancel_called:
                return -inf
            if scope._shield:
                break
            scope = scope._parent_scope
        return deadline

    return read


def clock_factory() -> Callable[[], float]:
    """The anyio clock without its per-call backend look-up (which costs more than the
    reading): the loop's own `time` on asyncio. Call from inside the event loop."""
    loop = running_asyncio_loop()
    if loop is not None:
        return loop.time
    return _other_clock if _on_trio() else anyio.current_time
