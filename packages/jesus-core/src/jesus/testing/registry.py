"""The registry conformance suite: what every registry backend must do.

Subclass it in a test module with a `backend` fixture returning a fresh backend (and the
usual `anyio_backend` fixture), and pytest runs every check against your backend:

    class TestMyRegistry(RegistryConformance):
        @pytest.fixture
        def backend(self):
            return MyRegistry("my://localhost")
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import anyio
import pytest

from jesus.messages import ResponseMode
from jesus.registry import lookups
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


def declaring(
    service: str,
    instance: str,
    listens: Iterable[str] = (),
    emits: Iterable[str] = (),
    uses: Iterable[str] = (),
) -> InstanceRecord:
    """A record that listens to, emits and uses what it is told."""
    channel = "tcp+msgpack+none"
    return dataclasses.replace(
        record(service, instance),
        listens={p: {"schema": True, "channel": channel, "channels": [channel]} for p in listens},
        emits={e: {"schema": True, "mode": "noResponse"} for e in emits},
        uses={t: {"request": True, "response": True} for t in uses},
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
        # Renewed every 0.5 s with a 2 s TTL, it is still there 2.5 s on, past its first TTL
        # (a loaded machine only looks later); the slack keeps a loaded machine from failing.
        for _ in range(5):
            await backend.register(record("a", "1"), ttl=2.0)
            await anyio.sleep(0.5)
        assert len(await backend.list_instances("a")) == 1

    async def test_unknown_service_is_empty(self, backend: Any) -> None:
        assert await backend.list_instances("nobody") == []

    async def test_an_event_finds_exactly_its_listeners(self, backend: Any) -> None:
        for r in (
            declaring("billing", "1", listens=("orders.created",)),
            declaring("audit", "1", listens=("orders.*",)),
            declaring("nosy", "1", listens=("orders",)),
            declaring("shipping", "1", listens=("orders.shipped",)),
        ):
            await backend.register(r, ttl=30)
        found = await lookups.listening(backend, "orders.created")
        assert sorted(r.service for r in found) == ["audit", "billing"]
        await backend.deregister("audit", "1")
        found = await lookups.listening(backend, "orders.created")
        assert [r.service for r in found] == ["billing"]

    async def test_a_starting_service_finds_the_peers_it_touches(self, backend: Any) -> None:
        new = declaring(
            "orders", "new", listens=("pay.*",), emits=("orders.placed",), uses=("pay.charge",)
        )
        for r in (
            declaring("orders", "old"),
            declaring("pay", "1", emits=("pay.charged",)),
            declaring("shop", "1", uses=("orders.place",)),
            declaring("audit", "1", listens=("orders.*",)),
        ):
            await backend.register(r, ttl=30)
        found = {(r.service, r.instance_id) for r in await lookups.related(backend, [new])}
        # a backend without indexes lists everyone: what matters is that none is missed
        assert {("orders", "old"), ("pay", "1"), ("shop", "1"), ("audit", "1")} <= found
