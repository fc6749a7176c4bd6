"""Deadlines travel with calls; cancelling either end stops the work at the other."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import jesus
from tests.helpers import wait_until
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio


async def test_deadline_exceeded_is_typed_and_the_handler_is_stopped(running: Any) -> None:
    svc, state = calculator()
    async with running(svc) as (_, client):
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("calc.sleep", 5, timeout=0.2)
        await wait_until(lambda: state["cancelled"] != 0)


async def test_an_enclosing_cancel_scope_sets_the_deadline(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (_, client):
        with pytest.raises(TimeoutError), anyio.fail_after(0.2):
            await client.call("calc.sleep", 5)


async def test_nested_calls_never_outlive_their_parent(running: Any) -> None:
    back = jesus.Service("back")
    front = jesus.Service("front")
    seen: dict[str, Any] = {}

    @back.method()
    async def slow(data: Any) -> Any:
        meta = jesus.current_call()
        seen["nested_ms"] = meta.deadline_ms if meta else None
        try:
            await anyio.sleep(30)
        except BaseException:
            seen["nested_stopped_after"] = anyio.current_time() - started
            raise

    @front.method()
    async def chain(data: Any) -> Any:
        meta = jesus.current_call()
        seen["parent_ms"] = meta.deadline_ms if meta else None
        # Asks for 30 s, but the parent has only ~300 ms left: the nested call gets less.
        return await front.call("back.slow", None, timeout=30)

    async with running(back, front) as (_, client):
        started = anyio.current_time()
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("front.chain", None, timeout=0.3)
        await wait_until(lambda: "nested_stopped_after" in seen)
        assert 0 < seen["parent_ms"] <= 300
        assert 0 < seen["nested_ms"] <= seen["parent_ms"]
        assert seen["nested_stopped_after"] < 3


async def test_caller_cancellation_cancels_the_handler(running: Any) -> None:
    svc, state = calculator()
    async with running(svc) as (_, client):
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call, "calc.sleep", 30)
            await anyio.sleep(0.2)
            tg.cancel_scope.cancel()
        await wait_until(lambda: state["cancelled"] != 0)
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2


async def test_leaving_a_stream_early_cancels_it_at_the_server(running: Any) -> None:
    svc, state = calculator()
    async with running(svc) as (_, client):
        async for item in client.stream("calc.count", {"n": 10_000, "delay": 0.001}):
            if item == 5:
                break
        await wait_until(lambda: state["cancelled"] != 0)
        assert state["produced"] < 10_000


async def test_server_stops_a_stream_when_it_passes_the_deadline(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (_, client):
        received = []
        with pytest.raises(jesus.DeadlineExceeded):
            async for item in client.stream("calc.count", {"n": 1000, "delay": 0.05}, timeout=0.3):
                received.append(item)
        assert 0 < len(received) < 1000


async def test_slow_consumer_applies_back_pressure(running: Any) -> None:
    """The server produces at most the credit window ahead of what the client consumed."""
    svc, state = calculator()
    window = 8
    async with running(svc, client={"limits": jesus.Limits(stream_window=window)}) as (_, client):
        consumed = 0
        async for _ in client.stream("calc.count", {"n": 200}):
            consumed += 1
            await anyio.sleep(0.002)
            # produced counts the item being yielded, plus what waits in the client buffer
            assert state["produced"] - consumed <= window + 1
            if consumed == 60:
                break
        assert state["produced"] < 200
