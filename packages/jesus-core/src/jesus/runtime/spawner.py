"""One task per incoming call, each cancellable on its own and bounded by its deadline, at
the lowest cost each backend allows. Transports use it to run handlers.

On asyncio a call is a bare task with a timer handle for its deadline: no cancel scope and no
task-group bookkeeping per call, which dominate the cost of a small call. On trio (whose
nursery and cancel scopes are cheap) it is a task in the nursery with a scope of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup

log = logging.getLogger("jesus.server")

Job = Callable[..., Coroutine[Any, Any, None]]
OnDeadline = Callable[[], None]


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop when running on anyio's asyncio backend; None on trio."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class CallSpawner:
    """`spawn(key, job, *args, deadline=, on_deadline=)` runs `job(*args)`; `cancel(key)` and
    `cancel_all()` stop calls; when `deadline` (anyio clock) passes first, the call is
    cancelled and `on_deadline()` runs. `aclose()` cancels whatever still runs and waits."""

    def __init__(self, task_group: TaskGroup) -> None:
        self._tg = task_group
        self._loop = running_asyncio_loop()
        self._asyncio = self._loop is not None
        self._running: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._running)

    def spawn(
        self,
        key: Any,
        job: Job,
        *args: Any,
        deadline: float | None = None,
        on_deadline: OnDeadline | None = None,
    ) -> None:
        if self._asyncio:
            self._spawn_asyncio(key, job, args, deadline, on_deadline)
        else:
            self._tg.start_soon(self._run_scoped, key, job, args, deadline, on_deadline)

    # ------------------------------------------------------------------ asyncio

    def _spawn_asyncio(
        self,
        key: Any,
        job: Job,
        args: tuple[Any, ...],
        deadline: float | None,
        on_deadline: OnDeadline | None,
    ) -> None:
        assert self._loop is not None
        task = self._loop.create_task(job(*args))
        timer = None
        if deadline is not None:
            timer = self._loop.call_at(deadline, self._expire, key, on_deadline)
        self._running[key] = (task, timer)
        task.add_done_callback(lambda t, _k=key: self._done(_k, t))

    def _expire(self, key: Any, on_deadline: OnDeadline | None) -> None:
        entry = self._running.get(key)
        if entry is not None and not entry[0].done():
            entry[0].cancel()
            if on_deadline is not None:
                on_deadline()

    def _done(self, key: Any, task: Any) -> None:
        entry = self._running.get(key)
        if entry is not None and entry[0] is task:
            del self._running[key]
            if entry[1] is not None:
                entry[1].cancel()
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    # ------------------------------------------------------------------ trio (and others)

    async def _run_scoped(
        self,
        key: Any,
        job: Job,
        args: tuple[Any, ...],
        deadline: float | None,
        on_deadline: OnDeadline | None,
    ) -> None:
        with anyio.CancelScope(
            deadline=deadline if deadline is not None else float("inf")
        ) as scope:
            self._running[key] = scope
            try:
                await job(*args)
            except Exception:
                log.exception("call task failed")
            finally:
                if self._running.get(key) is scope:
                    del self._running[key]
        if scope.cancelled_caught and not scope.cancel_called and on_deadline is not None:
            on_deadline()  # the deadline, not a cancel(), ended it

    # ------------------------------------------------------------------ cancelling

    def cancel(self, key: Any) -> None:
        entry = self._running.get(key)
        if entry is None:
            return
        if self._asyncio:
            entry[0].cancel()
        else:
            entry.cancel()

    def cancel_all(self) -> None:
        for key in list(self._running):
            self.cancel(key)

    async def aclose(self) -> None:
        self.cancel_all()
        if self._asyncio:
            tasks = [task for task, _ in self._running.values()]
            if tasks:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(tasks)
