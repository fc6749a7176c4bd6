"""Keep-alive over zmq: a client that is idle keeps its connection by pinging; a peer that
goes silent is dropped after three keepalive intervals."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import jesus
from jesus.testing.transport import conformance_service, serving, wait_until
from tests.zmq.raw import HELLO, raw_dealer, receive_all

pytestmark = pytest.mark.anyio
INTERVAL = 0.2


def service() -> tuple[jesus.Service, Any]:
    return conformance_service("zmq+msgpack", frozenset(jesus.ResponseMode))


async def test_an_idle_client_keeps_its_connection_by_pinging(registry: str) -> None:
    svc, _ = service()
    limits = jesus.Limits(keepalive_interval=INTERVAL)
    async with serving(registry, svc, limits=limits, client={"limits": limits}) as (node, client):
        server: Any = node.servers["zmq"]
        assert await client.call("conf.add", {"a": 1, "b": 1}) == 2
        assert server.peers == 1
        await anyio.sleep(INTERVAL * 8)  # far past three silent intervals, but it pinged
        assert server.peers == 1
        assert await client.call("conf.add", {"a": 2, "b": 2}) == 4
        assert server.peers == 1  # the same connection


async def test_a_silent_peer_is_dropped_after_three_intervals(registry: str) -> None:
    svc, _ = service()
    limits = jesus.Limits(keepalive_interval=INTERVAL)
    async with serving(registry, svc, limits=limits) as (node, client):
        server: Any = node.servers["zmq"]
        async with raw_dealer(node) as sock:
            sock.send_multipart([HELLO])
            assert len(await receive_all(sock, 0.1)) == 1  # HELLO back
            assert server.peers == 1
            started = anyio.current_time()
            await wait_until(lambda: server.peers == 0, timeout=3)
            assert anyio.current_time() - started >= INTERVAL * 2  # not at once
        assert await client.call("conf.add", {"a": 1, "b": 1}) == 2
