"""A client that outlives its server, and calls that step around a gone instance."""

from __future__ import annotations

import anyio
import pytest

import jesus
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
