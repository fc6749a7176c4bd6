"""One task per incoming call, each cancellable on its own and bounded by its deadline, at
the lowest cost each backend allows. The CallRunner runs handlers with it.

On asyncio a call is a bare task; one expiry task per spawner enforces every deadline, waking
only at the earliest one. That avoids a cancel scope and a timer per call, which together
cost more than the rest of a small call. On trio (whose nursery and cancel scopes are cheap)
a call is a task in the nursery with a scope of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

log = logging.getLogger("jesus.server")

Job = Callable[..., Coroutine[Any, Any, None]]


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop when running on anyio's asyncio backend; None on trio."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class CallSpawner:
    """`spawn(key, job, *args, deadline=)` runs `job(*args)`; `cancel(key)` and `cancel_all()`
    stop calls, and so does `deadline` (anyio clock) when it passes first: the job sees a
    cancellation either way. `on_done(key)` runs once a call is over, even one cancelled
    before it started (whose own `finally` never runs). `aclose()` cancels what still runs
    and waits for it."""

    def __init__(self, task_group: TaskGroup, on_done: Callable[[Any], None]) -> None:
        self._tg = task_group
        self._on_done = on_done
        self._loop = running_asyncio_loop()
        # key -> [task, deadline] on asyncio; key -> CancelScope elsewhere
        self._running: dict[Any, Any] = {}
        self._keys: dict[Any, Any] = {}  # asyncio task -> key
        self._next_expiry = math.inf
        self._wake = anyio.Event()
        self._expiring = False
        self._idle = anyio.Event()  # set while no call runs
        self._idle.set()

    def __len__(self) -> int:
        return len(self._running)

    async def wait_idle(self) -> None:
        """Return once no call runs (for draining)."""
        while self._running:
            await self._idle.wait()

    def _add(self, key: Any, entry: Any) -> None:
        if not self._running:
            self._idle = anyio.Event()
        self._running[key] = entry

    def _remove(self, key: Any) -> None:
        del self._running[key]
        if not self._running:
            self._idle.set()
        self._on_done(key)

    def spawn(self, key: Any, job: Job, *args: Any, deadline: float | None = None) -> None:
        loop = self._loop
        if loop is None:
            # Registered now, not when the task starts: a cancel() or a drain in this same
            # tick must see the call.
            scope = anyio.CancelScope(deadline=math.inf if deadline is None else deadline)
            self._add(key, scope)
            self._tg.start_soon(self._run_scoped, key, scope, job, args)
            return
        task = loop.create_task(job(*args))
        self._add(key, [task, deadline])
        self._keys[task] = key
        task.add_done_callback(self._done)
        if deadline is not None:
            if not self._expiring:
                self._expiring = True
                self._tg.start_soon(self._expire)
            if deadline < self._next_expiry:
                self._wake.set()

    # ------------------------------------------------------------------ asyncio

    def _done(self, task: Any) -> None:
        key = self._keys.pop(task, None)
        entry = self._running.get(key)
        if entry is not None and entry[0] is task:
            self._remove(key)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    async def _expire(self) -> None:
        while True:
            now = anyio.current_time()
            earliest = math.inf
            for key, (task, deadline) in list(self._running.items()):
                if deadline is None:
                    continue
                if deadline <= now:
                    self._running[key][1] = None  # expired once; _done removes it
                    task.cancel()
                elif deadline < earliest:
                    earliest = deadline
            self._next_expiry = earliest
            self._wake = anyio.Event()
            with anyio.move_on_after(earliest - now):
                await self._wake.wait()

    # ------------------------------------------------------------------ trio (and others)

    async def _run_scoped(
        self, key: Any, scope: anyio.CancelScope, job: Job, args: tuple[Any, ...]
    ) -> None:
        try:
            if scope.cancel_called:
                return  # cancelled before it started: like an asyncio task, it never runs
            with scope:
                await job(*args)
        except Exception:
            log.exception("call task failed")
        finally:
            if self._running.get(key) is scope:
                self._remove(key)

    # ------------------------------------------------------------------ cancelling

    def cancel(self, key: Any) -> None:
        entry = self._running.get(key)
        if entry is None:
            return
        if self._loop is not None:
            entry[0].cancel()
        else:
            entry.cancel()

    def cancel_all(self) -> None:
        for key in list(self._running):
            self.cancel(key)

    async def aclose(self) -> None:
        self.cancel_all()
        if self._loop is not None and self._keys:
            with anyio.CancelScope(shield=True):
                await asyncio.wait(list(self._keys))
