"""The one-shot results a call waits for (jesus.transport.futures), on every backend."""

from __future__ import annotations

import anyio
import pytest

from jesus.transport.futures import EventFuture, future_factory

pytestmark = pytest.mark.anyio


async def test_a_result_set_before_or_after_the_wait_is_received() -> None:
    new = future_factory()
    early = new()
    early.set_result(1)
    assert early.done() and await early == 1
    late = new()
    async with anyio.create_task_group() as tg:
        got: list[int] = []

        async def wait() -> None:
            got.append(await late)

        tg.start_soon(wait)
        await anyio.sleep(0.01)
        assert not late.done()
        late.set_result(2)
    assert got == [2]


async def test_an_error_is_raised_to_the_waiter() -> None:
    future = future_factory()()
    future.set_exception(ConnectionError("gone"))
    with pytest.raises(ConnectionError, match="gone"):
        await future


async def test_the_first_outcome_stands(anyio_backend: str) -> None:
    """A late answer (a retransmission's, a broken connection's) changes nothing; an
    asyncio future refuses a second outcome itself, and its callers check done()."""
    kinds = [EventFuture, future_factory()] if anyio_backend == "trio" else [EventFuture]
    for new in kinds:
        future = new()
        future.set_result("first")
        future.set_exception(ConnectionError("late"))
        future.set_result("second")
        assert await future == "first"


async def test_a_cancelled_wait_can_start_again(anyio_backend: str) -> None:
    """Retransmission loops wait on one future with a timeout, again and again (a bare
    asyncio future is cancelled with its waiter: those loops use an EventFuture)."""
    kinds = [EventFuture, future_factory()] if anyio_backend == "trio" else [EventFuture]
    for new in kinds:
        future = new()
        for _ in range(3):
            with anyio.move_on_after(0.01) as scope:
                await future
            assert scope.cancelled_caught and not future.done()
        future.set_result("at last")
        assert await future == "at last"
