"""What the memcached registry costs does not grow with the registry: heartbeats, an event's
listeners, the start-up check, removing gone instances. Bytes are counted by a proxy between
the backend and a real memcached; the big figures are in benchmarks/registry_scale.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from jesus.testing.registry import record
from jesus_schema_memcache import MemcacheRegistry, pages
from tests.memcache.proxy import Counting, counting_proxy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(memcached_address: str) -> AsyncIterator[Counting]:
    async with counting_proxy(memcached_address) as counter:
        yield counter


@pytest.fixture
def backend(proxy: Counting) -> MemcacheRegistry:
    return MemcacheRegistry(f"memcache://{proxy.address}?prefix=t{uuid.uuid4().hex[:12]}")


async def bytes_of(proxy: Counting, op: object, *args: object) -> int:
    before = proxy.moved
    await op(*args)  # type: ignore[operator]
    return proxy.moved - before


async def grow(backend: MemcacheRegistry, service: str, names: int, ids: int) -> None:
    """`names` more service names and `ids` more instances of `service` in the indexes."""

    def fill() -> None:
        for i in range(names):
            pages.add(backend.store, backend.services_key(), f"other-service-{i:05d}")
        for i in range(ids):
            pages.add(backend.store, backend.ids_key(service), f"instance-{i:05d}")

    await anyio.to_thread.run_sync(fill)


async def test_a_heartbeat_moves_the_same_bytes_however_large_the_registry(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    mine = record("calc", "mine")
    await backend.register(mine, ttl=30)
    assert await backend.is_registered("calc", "mine")
    small = (
        await bytes_of(proxy, backend.register, mine, 30),
        await bytes_of(proxy, backend.is_registered, "calc", "mine"),
    )
    await grow(backend, "calc", names=1500, ids=1500)  # both indexes past one page
    assert await backend.is_registered("calc", "mine")  # its pages changed: read once
    large = (
        await bytes_of(proxy, backend.register, mine, 30),
        await bytes_of(proxy, backend.is_registered, "calc", "mine"),
    )
    # A CAS value may gain a digit; the indexes grew by tens of KB.
    assert abs(large[0] - small[0]) < 16 and abs(large[1] - small[1]) < 16, (small, large)
    assert small[1] < 200, small  # a check is a meta get of three keys: no values
    assert await backend.is_registered("calc", "mine")


async def test_a_changed_page_is_read_again_once_and_only_that_page(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    mine = record("calc", "mine")
    await backend.register(mine, ttl=30)
    await grow(backend, "calc", names=0, ids=3000)  # several pages of ids
    assert await backend.is_registered("calc", "mine")
    await backend.register(record("calc", "newcomer"), ttl=30)  # changes one page at most
    moved = await bytes_of(proxy, backend.is_registered, "calc", "mine")
    assert moved < 2 * pages.PAGE_BYTES, moved
    assert await bytes_of(proxy, backend.is_registered, "calc", "mine") < 200


async def test_a_heartbeat_notices_each_membership_it_lost(backend: MemcacheRegistry) -> None:
    mine = record("calc", "mine")
    await backend.register(mine, ttl=30)
    assert await backend.is_registered("calc", "mine")
    for spoil in (
        lambda: backend.store.delete(backend.services_key()),
        lambda: backend.store.delete(backend.ids_key("calc")),
        lambda: backend.store.delete(backend.record_key("calc", "mine")),
        lambda: pages.remove(backend.store, {backend.ids_key("calc"): {"mine"}}),
    ):
        await anyio.to_thread.run_sync(spoil)
        assert not await backend.is_registered("calc", "mine")
        await backend.register(mine, ttl=30)  # what the node does then
        assert await backend.is_registered("calc", "mine")
        assert [r.instance_id for r in await backend.list_instances("calc")] == ["mine"]
        assert {r.service for r in await backend.list_instances()} == {"calc"}
