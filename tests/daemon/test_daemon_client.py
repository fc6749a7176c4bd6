"""A Python process with neither registry nor schemas calls through the daemon, and the whole
path of the node daemon: process -> daemon -> daemon -> process, two daemons on one registry."""

from __future__ import annotations

import os
from typing import Any

import anyio
import pytest

import jesus
from jesus_daemon import DaemonClient, provide, run_daemon
from tests.daemon.test_providers import calc, socket  # noqa: F401  (the fixture)
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio


async def test_every_mode_and_an_event_from_one_daemon_to_the_other(
    registry: str,
    socket: str,  # noqa: F811
) -> None:
    seen: list[Any] = []
    other = os.path.join(os.path.dirname(socket), "other.sock")
    async with (
        run_daemon(socket, registry=registry),  # the node of the service
        provide(calc(seen), socket=socket),
        run_daemon(other, registry=registry),  # the node of the caller
        DaemonClient(other, name="caller") as client,
    ):
        assert await client.call("pcalc.add", {"a": 20, "b": 22}) == 42
        assert await client.call("pcalc.record", 5, mode="ack") is None
        assert ("record", 5) in seen  # acked by the process that runs it, two hops away
        await client.notify("pcalc.forget", 6)
        await wait_until(lambda: ("forget", 6) in seen)
        assert [i async for i in client.stream("pcalc.count", 4)] == [0, 1, 2, 3]
        await client.emit("order.placed", {"id": 9}, mode="ack")
        assert ("order.placed", 9) in seen


async def test_errors_come_back_typed_and_the_connection_stays(
    registry: str,
    socket: str,  # noqa: F811
) -> None:
    async with (
        run_daemon(socket, registry=registry),
        provide(calc([]), socket=socket),
        DaemonClient(socket) as client,
    ):
        with pytest.raises(jesus.InvalidRequest, match=r"pcalc\.add"):
            await client.call("pcalc.add", {"a": "x"})
        with pytest.raises(jesus.InvalidResponse):
            await client.call("pcalc.broken", {"a": 1, "b": 1})
        with pytest.raises(jesus.Unavailable):
            await client.call("nobody.here", {})
        with pytest.raises(jesus.UnknownMethod):  # not service.method
            await client.call("nodot", {})
        assert await client.call("pcalc.add", {"a": 1, "b": 1}) == 2


async def test_a_call_keeps_its_deadline_across_the_hops(
    registry: str,
    socket: str,  # noqa: F811
) -> None:
    slow = jesus.Service("slow", channel="tcp+msgpack")
    started: list[int] = []

    @slow.method()
    async def wait(data: Any) -> None:
        meta = jesus.current_call()
        started.append(meta.deadline_ms if meta and meta.deadline_ms is not None else -1)
        await anyio.sleep(5)

    async with (
        run_daemon(socket, registry=registry),
        provide(slow, socket=socket),
        DaemonClient(socket) as client,
    ):
        with anyio.fail_after(3):
            with pytest.raises(jesus.DeadlineExceeded):
                await client.call("slow.wait", None, timeout=0.3)
        assert 0 <= started[0] <= 300  # what was left of it, not a fresh one
