"""Crashes, as kill -9 makes them: a process that provided services dies, and the daemon
itself dies under traffic and comes back."""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
import pytest

import jesus
from jesus_daemon import provide, run_daemon
from tests.daemon.test_cli import _start, _stop
from tests.daemon.test_providers import calc, socket  # noqa: F401  (the fixture)
from tests.helpers import wait_until
from tests.integration.test_cli import ROOT

pytestmark = pytest.mark.anyio


async def test_a_crashed_process_is_deregistered_at_once(
    registry: str,
    socket: str,  # noqa: F811
) -> None:
    async with run_daemon(socket, registry=registry), jesus.Client(registry) as client:
        proc = await anyio.open_process(
            [sys.executable, "-m", "tests.daemon.provider_process", socket],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert proc.stdout is not None
            with anyio.fail_after(20):
                assert (await proc.stdout.receive()).strip() == b"provided"
            assert await client.call("pcalc.add", {"a": 1, "b": 2}) == 3
            proc.kill()
            await proc.wait()
            backend = client.resolver.backend
            with anyio.fail_after(2):  # the record's ttl is 10 s: this is the connection closing
                while await backend.list_instances("pcalc"):
                    await anyio.sleep(0.02)
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.aclose()


def slow_and_counting() -> tuple[jesus.Service, dict[str, Any]]:
    svc = jesus.Service("slowcalc", channel="tcp+msgpack")
    state: dict[str, Any] = {"acked": [], "started": anyio.Event()}

    @svc.method(mode="ack", request={"type": "integer"})
    async def record(n: int) -> None:
        state["acked"].append(n)

    @svc.method()
    async def wait(data: Any) -> None:
        state["started"].set()
        await anyio.sleep(30)

    return svc, state


async def test_the_daemon_crashes_under_traffic_and_comes_back(
    registry: str,
    socket: str,  # noqa: F811
) -> None:
    svc, state = slow_and_counting()
    daemon = _start(registry, "daemon", "--socket", socket)
    try:
        assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
        async with provide(svc, socket=socket), jesus.Client(registry) as client:
            for n in range(20):  # each ack came from the process, through the daemon
                await client.call("slowcalc.record", n, mode="ack")
            failure: list[BaseException] = []

            async def in_flight() -> None:
                try:
                    await client.call("slowcalc.wait", None, timeout=20)
                except jesus.CallError as exc:
                    failure.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(in_flight)
                with anyio.fail_after(5):
                    await state["started"].wait()
                daemon.kill()  # kill -9: no goodbye to anybody
                daemon.wait()
                with anyio.fail_after(5):
                    await wait_until(lambda: failure, timeout=5)
            assert isinstance(failure[0], jesus.Unavailable), failure
            # Nothing that was acknowledged is lost.
            assert state["acked"] == list(range(20))

            daemon = _start(registry, "daemon", "--socket", socket)
            assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
            with anyio.fail_after(10):  # the process offers its services again by itself
                while True:
                    try:
                        await client.call("slowcalc.record", 99, mode="ack")
                        break
                    except jesus.Unavailable:
                        await anyio.sleep(0.05)
            assert state["acked"][-1] == 99
    finally:
        _stop(daemon)
