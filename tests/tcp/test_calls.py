"""All four response modes, over tcp and unix, with each codec and compression."""

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


async def test_call_of_a_no_response_method_returns_at_once(running: Any) -> None:
    svc, state = calculator()
    async with running(svc) as (_, client):
        assert await client.call("calc.fire", [1]) is None
        with anyio.fail_after(5):
            await state["event"].wait()


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


async def test_typed_errors(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc, client={"validate": False}) as (_, client):
        with pytest.raises(jesus.InvalidRequest) as invalid:
            await client.call("calc.add", {"a": "x"})
        assert invalid.value.remote and invalid.value.corrid
        assert any("/a" in d for d in invalid.value.details)
        with pytest.raises(jesus.InvalidResponse, match="response schema"):
            await client.call("calc.wrong")
        with pytest.raises(jesus.RemoteFailure, match="ValueError: kaput"):
            await client.call("calc.boom")
        with pytest.raises(jesus.UnknownMethod):
            await client.call("calc.nope")
        with pytest.raises(jesus.ServiceNotFound):
            await client.call("nobody.home")
        # the server is still fine
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2


async def test_caller_validates_before_sending(running: Any) -> None:
    svc, state = calculator()
    async with running(svc) as (_, client):
        with pytest.raises(jesus.InvalidRequest) as exc:
            await client.call("calc.add", {"a": 1})
        assert not exc.value.remote
        assert state["corrids"] == []  # never reached the server
        with pytest.raises(jesus.InvalidResponse) as bad:
            await client.call("calc.wrong")
        assert bad.value.remote  # the server caught it first


async def test_stream_error_midway_reaches_the_caller(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (_, client):
        seen = []
        with pytest.raises(jesus.RemoteFailure, match="stream broke midway"):
            async for item in client.stream("calc.count", {"n": 3, "fail": True}):
                seen.append(item)
        assert seen == [0, 1, 2]


async def test_mode_mismatches_are_refused(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (_, client):
        with pytest.raises(jesus.InvalidRequest, match="stream method"):
            await client.call("calc.count", {"n": 1})
        with pytest.raises(jesus.InvalidRequest, match="not 'stream'"):
            async for _ in client.stream("calc.add", {"a": 1, "b": 2}):
                pass


async def test_nested_calls_inherit_the_corrid(running: Any) -> None:
    calc, state = calculator()
    front = jesus.Service("front")

    @front.method()
    async def double_add(data: Any) -> dict[str, Any]:
        meta = jesus.current_call()
        total = await front.call("calc.add", data) * 2
        return {"total": total, "corrid": meta.corrid if meta else None}

    async with running(calc, front) as (_, client):
        result = await client.call("front.double_add", {"a": 1, "b": 2})
        assert result["total"] == 6
        assert state["corrids"] == [result["corrid"]]


async def test_unserializable_result_is_an_error_not_a_hang(running: Any) -> None:
    svc = jesus.Service("odd")

    @svc.method()
    async def weird(data: Any) -> Any:
        return {"x": object()}

    async with running(svc) as (_, client):
        with pytest.raises(jesus.InvalidResponse, match="cannot encode"):
            await client.call("odd.weird")
