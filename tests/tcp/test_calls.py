"""Every mode over tcp and unix with each codec and compression, and one shared connection (the
rest of what every transport must do is in tests/tcp/test_conformance.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import jesus
from tests.helpers import wait_until
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio

CHANNELS = ["tcp+msgpack", "tcp+json+gzip", "tcp+msgpack+zstd", "unix+msgpack", "unix+json+zstd"]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_all_modes(running: Any, channel: str) -> None:
    svc, state = calculator(channel)
    async with running(svc) as (_node, client):
        assert await client.call("calc.add", {"a": 2, "b": 3}) == 5
        big = {"blob": "jesus " * 20_000}  # compressed on channels that compress
        assert await client.call("calc.echo", big) == big
        assert await client.call("calc.record", {"n": 1}) is None
        await wait_until(lambda: state["acked"] == [{"n": 1}])  # ack: accepted, runs after
        assert await client.notify("calc.fire", {"n": 2}) is None
        await wait_until(lambda: bool(state["notified"]))
        assert state["notified"] == [{"n": 2}]
        assert [i async for i in client.stream("calc.count", {"n": 100})] == list(range(100))


async def test_many_concurrent_calls_share_one_connection(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (_, client):
        results: list[int] = []

        async def one(i: int) -> None:
            results.append(await client.call("calc.add", {"a": i, "b": i}))

        async with anyio.create_task_group() as tg:
            for i in range(500):
                tg.start_soon(one, i)
        assert sorted(results) == [2 * i for i in range(500)]
        (pool,) = client._transports.values()
        assert len(pool._pool) == 1  # type: ignore[attr-defined]


async def test_mode_mismatches_are_refused(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (_, client):
        with pytest.raises(jesus.InvalidRequest, match="stream method"):
            await client.call("calc.count", {"n": 1})
        with pytest.raises(jesus.InvalidRequest, match="not 'stream'"):
            async for _ in client.stream("calc.add", {"a": 1, "b": 2}):
                pass
