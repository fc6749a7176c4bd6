"""The policies a provider declares, as its callers and its server apply them: retries that
do not multiply down a chain of calls, bulkheads, default deadlines."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

import jesus

pytestmark = pytest.mark.anyio


async def test_retries_do_not_multiply_through_nested_calls(running: Any) -> None:
    arrived: Counter[str] = Counter()
    back = jesus.Service("back")
    front = jesus.Service("front")

    @back.method(idempotent=True, retry=3)
    async def work(data: Any) -> Any:
        arrived["work"] += 1
        raise jesus.Unavailable("back is down")

    @front.method(idempotent=True, retry=3)
    async def ask(data: Any) -> Any:
        arrived["ask"] += 1
        return await front.call("back.work", data)

    async with running(back, front) as (_, client):
        with pytest.raises(jesus.Unavailable, match="back is down"):
            await client.call("back.work")
        assert arrived == {"work": 3}  # a caller of its own: the callee's 3 attempts
        arrived.clear()
        with pytest.raises(jesus.Unavailable, match="back is down"):
            await client.call("front.ask")
        # The outer call is tried 3 times; inside it, the inner call is not retried (3, not 9).
        assert arrived == {"ask": 3, "work": 3}


async def test_a_call_is_not_retried_past_its_deadline(running: Any) -> None:
    arrived: Counter[str] = Counter()
    svc = jesus.Service("flap")

    @svc.method(idempotent=True, retry=jesus.Retry(attempts=5, backoff=20.0, max_backoff=20.0))
    async def once(data: Any) -> Any:
        arrived["once"] += 1
        raise jesus.Unavailable("not now")

    async with running(svc) as (_, client):
        started = anyio.current_time()
        with pytest.raises(jesus.Unavailable):
            await client.call("flap.once", timeout=0.15)
        # A backoff (up to 20 s) that would end past the deadline is not waited for: the
        # error comes about when the deadline passes, not seconds later.
        assert anyio.current_time() - started < 5
        assert 1 <= arrived["once"] < 5


@pytest.mark.parametrize("channel", ["tcp+msgpack", "http+json"])
async def test_a_bulkhead_refuses_past_its_limit_with_a_hint_and_retries_wait_for_it(
    running: Any, channel: str
) -> None:
    release = anyio.Event()
    holding_now = 0
    svc = jesus.Service("vault", channel=channel)

    @svc.method(concurrency=2, retry=1)
    async def hold(data: Any) -> Any:
        nonlocal holding_now
        holding_now += 1
        await release.wait()
        holding_now -= 1
        return "done"

    @svc.method(concurrency=1, retry=5)
    async def brief(data: Any) -> Any:
        await anyio.sleep(0.02)
        return data

    async with running(svc) as (_, client):
        results: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def holding() -> None:
                results.append(await client.call("vault.hold"))

            tg.start_soon(holding)
            tg.start_soon(holding)
            while holding_now < 2:  # both slots taken
                await anyio.sleep(0.01)
            with pytest.raises(jesus.ResourceExhausted, match="concurrency=2") as refused:
                await client.call("vault.hold")
            assert refused.value.remote and refused.value.retry_after > 0
            assert not refused.value.may_have_run
            release.set()
        assert results == ["done", "done"]
        assert await client.call("vault.hold") == "done"  # the slots are free again
        # With attempts to spare, a full bulkhead is waited out (retry-after) and no call fails.
        answers = []
        async with anyio.create_task_group() as tg:
            for n in range(3):

                async def briefly(n: int = n) -> None:
                    answers.append(await client.call("vault.brief", n))

                tg.start_soon(briefly)
        assert sorted(answers) == [0, 1, 2]


async def test_a_provider_declares_the_deadline_its_callers_use_when_they_set_none(
    running: Any,
) -> None:
    svc = jesus.Service("slowpoke")

    @svc.method(timeout=0.2)
    async def nap(data: Any) -> Any:
        await anyio.sleep(data)
        return "rested"

    async with running(svc) as (_, client):
        started = anyio.current_time()
        with pytest.raises(jesus.DeadlineExceeded, match=r"within 0\.200s"):
            await client.call("slowpoke.nap", 5)
        assert anyio.current_time() - started < 2
        assert await client.call("slowpoke.nap", 0.3, timeout=2) == "rested"  # the caller's wins
        listed = await client.resolver.instances("slowpoke")
        assert listed[0].methods["nap"].timeout == 0.2


async def test_a_draining_instance_refuses_and_its_calls_go_to_another(registry: str) -> None:
    def svc(name: str) -> jesus.Service:
        s = jesus.Service("echo")

        @s.method()
        async def who(data: Any) -> Any:
            return name

        return s

    async with (
        jesus.serve(svc("one"), registry=registry) as one,
        jesus.serve(svc("two"), registry=registry),
        jesus.Client(registry) as client,
    ):
        assert {await client.call("echo.who") for _ in range(6)} == {"one", "two"}
        one.servers["tcp"].runner.closing = True  # as drain() does: new calls get UNAVAILABLE
        # Refused before it ran: safe to try elsewhere, for any method (no call fails).
        assert [await client.call("echo.who") for _ in range(6)] == ["two"] * 6
