"""The registry conformance suite: what every registry backend must do.

Subclass it in a test module with a `backend` fixture returning a fresh backend (and the
usual `anyio_backend` fixture), and pytest runs every check against your backend:

    class TestMyRegistry(RegistryConformance):
        @pytest.fixture
        def backend(self):
            return MyRegistry("my://localhost")
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jesus.messages import ResponseMode
from jesus.registry.base import InstanceRecord, MethodRecord


def record(service: str, instance: str, host: str = "elsewhere") -> InstanceRecord:
    return InstanceRecord(
        service=service,
        version="1.2.3",
        instance_id=instance,
        endpoints={"tcp": "tcp://127.0.0.1:1"},
        methods={"m": MethodRecord({"type": "object"}, True, ResponseMode.ACK, "tcp+msgpack+none")},
        host=host,
        pid=0,
    )


class RegistryConformance:
    """Subclass with a `backend` fixture to check a registry backend."""

    pytestmark = pytest.mark.anyio

    async def test_register_list_deregister(self, backend: Any) -> None:
        await backend.register(record("a", "1"), ttl=30)
        await backend.register(record("a", "2"), ttl=30)
        await backend.register(record("b", "1"), ttl=30)
        assert sorted(r.instance_id for r in await backend.list_instances("a")) == ["1", "2"]
        assert {r.service for r in await backend.list_instances()} == {"a", "b"}
        await backend.deregister("a", "1")
        assert [r.instance_id for r in await backend.list_instances("a")] == ["2"]

    async def test_records_round_trip(self, backend: Any) -> None:
        await backend.register(record("a", "1"), ttl=30)
        found = await backend.list_instances("a")
        assert [r.instance_id for r in found] == ["1"], [
            (r.service, r.instance_id, backend.url) for r in found
        ]
        (back,) = found
        assert back.methods["m"].mode is ResponseMode.ACK
        assert back.methods["m"].request == {"type": "object"}
        assert back.version == "1.2.3" and back.endpoints == {"tcp": "tcp://127.0.0.1:1"}

    async def test_an_instance_that_stops_heartbeating_drops_out_within_its_ttl(
        self, backend: Any
    ) -> None:
        await backend.register(record("a", "1"), ttl=0.5)
        assert len(await backend.list_instances("a")) == 1
        await anyio.sleep(0.7)
        assert await backend.list_instances("a") == []

    async def test_heartbeat_renews(self, backend: Any) -> None:
        # Renewed every 0.5 s with a 2 s TTL, it outlives its first TTL; the slack keeps a
        # loaded machine from failing the check.
        for _ in range(6):
            await backend.register(record("a", "1"), ttl=2.0)
            await anyio.sleep(0.5)
        assert len(await backend.list_instances("a")) == 1

    async def test_unknown_service_is_empty(self, backend: Any) -> None:
        assert await backend.list_instances("nobody") == []
