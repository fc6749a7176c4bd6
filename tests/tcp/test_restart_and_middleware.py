from __future__ import annotations

from typing import Any

import anyio
import pytest

import jesus
from jesus.plugins import build_catalog, get_plugin_manager
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio


async def test_client_reconnects_after_the_server_restarts(registry: str) -> None:
    svc, _ = calculator()
    bind = {"tcp": "127.0.0.1:0"}
    async with jesus.Client(registry) as client:
        async with jesus.serve(svc, registry=registry, bind=bind) as node:
            assert await client.call("calc.add", {"a": 1, "b": 1}) == 2
            port = node.endpoints["tcp"].rsplit(":", 1)[1]
        client.resolver.forget()
        async with jesus.serve(svc, registry=registry, bind={"tcp": f"127.0.0.1:{port}"}):
            assert await client.call("calc.add", {"a": 2, "b": 2}) == 4


async def test_calls_move_to_a_live_instance_when_one_is_gone(registry: str) -> None:
    svc_a, state_a = calculator()
    svc_b, state_b = calculator()
    async with jesus.serve(svc_a, registry=registry), jesus.Client(registry) as client:
        async with jesus.serve(svc_b, registry=registry) as node_b:
            for i in range(20):
                await client.call("calc.add", {"a": i, "b": 0})
            assert state_a["corrids"] and state_b["corrids"]  # spread over both
            stale = node_b.records[0]
        # b is gone but a stale cache still lists it: calls step around it
        client.resolver._cache["calc"] = (
            anyio.current_time() + 1e9,
            [stale, *await client.resolver.backend.list_instances("calc")],
        )
        before = len(state_a["corrids"])
        for i in range(10):
            assert await client.call("calc.add", {"a": i, "b": 1}) == i + 1
        assert len(state_a["corrids"]) == before + 10


async def test_graceful_shutdown_drains_in_flight_calls(registry: str) -> None:
    svc, state = calculator()
    results: list[Any] = []
    async with jesus.Client(registry) as client, anyio.create_task_group() as tg:

        async def slow_call() -> None:
            results.append(await client.call("calc.sleep", 0.5))

        async with jesus.serve(svc, registry=registry):
            tg.start_soon(slow_call)
            await anyio.sleep(0.1)
        # serve() returned only after the call in flight finished and was answered
    assert results == ["slept"]
    assert state["cancelled"] == 0


class Recorder(jesus.Middleware):
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    async def client(self, call: jesus.CallInfo, call_next: Any) -> Any:
        call.meta.traceparent = "00-trace-span-01"
        self.seen.append(("client", call.method, call.meta.corrid))
        return await call_next(call)

    async def server(self, call: jesus.CallInfo, call_next: Any) -> Any:
        self.seen.append(("server", call.method, call.meta.traceparent or ""))
        result = await call_next(call)
        return result


async def test_middleware_wraps_both_ends(registry: str) -> None:
    recorder = Recorder()

    class Plugin:
        @jesus.hookimpl
        def jesus_register_middleware(self, register: Any) -> None:
            register(recorder)

    pm, failures = get_plugin_manager()
    pm.register(Plugin(), name="recorder")
    catalog = build_catalog(pm, failures)
    svc, _ = calculator()
    async with (
        jesus.serve(svc, registry=registry, catalog=catalog),
        jesus.Client(registry, catalog=catalog) as client,
    ):
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3
        assert [i async for i in client.stream("calc.count", {"n": 2})] == [0, 1]
    assert recorder.seen[0][:2] == ("client", "add")
    assert recorder.seen[1] == ("server", "add", "00-trace-span-01")
    assert recorder.seen[2][:2] == ("client", "count")
    assert recorder.seen[3] == ("server", "count", "00-trace-span-01")


class Gatekeeper(jesus.Middleware):
    """Refuses calls without a user, the way an auth plugin would."""

    async def server(self, call: jesus.CallInfo, call_next: Any) -> Any:
        if call.meta.userid is None:
            raise PermissionError("who are you?")
        return await call_next(call)


async def test_middleware_that_refuses_a_call_answers_the_caller(registry: str) -> None:
    class Plugin:
        @jesus.hookimpl
        def jesus_register_middleware(self, register: Any) -> None:
            register(Gatekeeper())

    pm, failures = get_plugin_manager()
    pm.register(Plugin(), name="gatekeeper")
    catalog = build_catalog(pm, failures)
    svc, _ = calculator()
    async with (
        jesus.serve(svc, registry=registry, catalog=catalog),
        jesus.Client(registry) as client,
    ):
        with pytest.raises(jesus.RemoteFailure, match="who are you"):
            await client.call("calc.add", {"a": 1, "b": 2})
        with pytest.raises(jesus.RemoteFailure, match="who are you"):
            async for _ in client.stream("calc.count", {"n": 2}):
                pass
        assert await client.call("calc.add", {"a": 1, "b": 2}, userid="ann") == 3
        assert [i async for i in client.stream("calc.count", {"n": 1}, userid="ann")] == [0]
