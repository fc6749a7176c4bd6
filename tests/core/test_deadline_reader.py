"""The enclosing cancel scopes' deadline as a client reads it per call
(`jesus.transport.futures.deadline_factory`): the same value as anyio's own, in every shape
of scopes, from whichever task calls the reader."""

# Scopes entered to be read, not waited in:
# ruff: noqa: ASYNC100

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from jesus.transport import futures

pytestmark = pytest.mark.anyio


def same(read: Callable[[], float]) -> float:
    value = read()
    assert value == anyio.current_effective_deadline()
    return value


async def test_the_reader_agrees_with_anyio_in_every_shape_of_scopes() -> None:
    read = futures.deadline_factory()
    same(read)
    now = anyio.current_time()
    with anyio.fail_after(10):
        assert same(read) == pytest.approx(now + 10, abs=1)
        with anyio.fail_after(5):  # the nearer deadline wins
            assert same(read) == pytest.approx(now + 5, abs=1)
        with anyio.fail_after(50):  # a farther one changes nothing
            assert same(read) == pytest.approx(now + 10, abs=1)
        with anyio.CancelScope(shield=True):  # outer deadlines stop at a shield
            assert same(read) == math.inf
            with anyio.fail_after(20):
                assert same(read) == pytest.approx(now + 20, abs=1)
        with anyio.CancelScope() as scope:
            scope.cancel()
            assert same(read) == -math.inf
        with anyio.CancelScope() as scope:
            scope.deadline = now + 3  # moved after it was entered
            assert same(read) == pytest.approx(now + 3, abs=1)
    same(read)


async def test_the_reader_bound_in_one_task_reads_the_scopes_of_the_task_calling_it() -> None:
    read = futures.deadline_factory()  # as Client.__aenter__ binds it
    seen: dict[str, float] = {}

    async def worker(name: str, seconds: float) -> None:
        with anyio.fail_after(seconds):
            await anyio.lowlevel.checkpoint()
            seen[name] = same(read)

    now = anyio.current_time()
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, "near", 2)
            tg.start_soon(worker, "far", 60)  # bounded by the group's host scope
    assert seen["near"] == pytest.approx(now + 2, abs=1)
    assert seen["far"] == pytest.approx(now + 30, abs=1)


async def test_on_asyncio_the_scopes_are_walked_without_a_look_up_of_the_loop(
    anyio_backend: Any,
) -> None:
    read = futures.deadline_factory()
    if anyio_backend in ("trio", ("trio", {})):
        assert read is not anyio.current_effective_deadline  # trio's own, without anyio's
        return
    assert read is not anyio.current_effective_deadline, (
        "anyio's task states moved: jesus.transport.futures._scope_walk needs a look"
    )


async def test_a_walk_that_cannot_read_anyio_falls_back_to_anyio(
    anyio_backend: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
        def read() -> float:
            raise AttributeError("_deadline")

        return read

    monkeypatch.setattr(futures, "_scope_walk", broken)
    if anyio_backend in ("trio", ("trio", {})):  # trio's own reader: no walk to fall from
        import trio

        assert futures.deadline_factory() is trio.current_effective_deadline
        return
    assert futures.deadline_factory() is anyio.current_effective_deadline
    monkeypatch.setattr(futures, "_scope_walk", lambda loop: lambda: 1.0)  # disagrees
    assert futures.deadline_factory() is anyio.current_effective_deadline
