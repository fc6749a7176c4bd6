"""The memcached registry against real memcached servers."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
from jesus.plugins import default_catalog
from jesus.registry.open import open_registry
from jesus.testing.registry import record
from jesus_schema_memcache import MemcacheRegistry
from tests.helpers.registry import TimedOnce
from tests.helpers.services import calculator
from tests.memcache.conftest import Memcached

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class TestMemcacheRegistry(TimedOnce):
    @pytest.fixture
    def backend(self, memcache_url: str) -> MemcacheRegistry:
        return MemcacheRegistry(memcache_url)


class TestMemcacheCluster(TimedOnce):
    """Two memcached nodes acting as one registry."""

    @pytest.fixture
    def backend(self, memcache_url: str, second_memcached: Memcached) -> MemcacheRegistry:
        first, _, prefix = memcache_url.removeprefix("memcache://").partition("?")
        return MemcacheRegistry(f"memcache://{first},{second_memcached.address}?{prefix}")


async def test_a_cluster_spreads_records_over_its_nodes(
    memcache_url: str, second_memcached: Memcached
) -> None:
    first, _, prefix = memcache_url.removeprefix("memcache://").partition("?")
    cluster = MemcacheRegistry(f"memcache://{first},{second_memcached.address}?{prefix}")
    for i in range(40):
        await cluster.register(record(f"s{i % 4}", str(i)), ttl=30)
    assert len(await cluster.list_instances()) == 40
    on_own_node = MemcacheRegistry(f"memcache://{second_memcached.address}?{prefix}")
    keys = [f"{on_own_node.prefix}:inst:s{i % 4}:{i}" for i in range(40)]
    held = on_own_node.store.get_many(keys)
    assert 0 < len(held) < 40  # some records live on each node


async def test_an_index_that_is_not_json_is_a_registry_error(memcache_url: str) -> None:
    """Written by something else: reported as RegistryError (which a heartbeat survives),
    never a bare ValueError that would take serve() down."""
    backend = MemcacheRegistry(memcache_url)
    backend.store.set(backend.ids_key("calc"), b"{not json", 0)
    with pytest.raises(jesus.RegistryError, match="failed"):
        await backend.register(record("calc", "1"), ttl=30)
    backend.store.delete(backend.ids_key("calc"))
    await backend.register(record("calc", "1"), ttl=30)
    assert [r.instance_id for r in await backend.list_instances("calc")] == ["1"]


def test_url_selects_the_backend(memcache_url: str) -> None:
    assert isinstance(open_registry(memcache_url, default_catalog()), MemcacheRegistry)
    with pytest.raises(jesus.ConfigurationError, match="host:port"):
        MemcacheRegistry("memcache://nohost")


async def test_serve_and_call_through_memcached(memcache_url: str) -> None:
    svc, _ = calculator()
    async with jesus.serve(svc, registry=memcache_url), jesus.Client(memcache_url) as client:
        assert await client.call("calc.add", {"a": 2, "b": 2}) == 4
        (record_,) = await client.resolver.backend.list_instances("calc")
        assert record_.methods["add"].request["required"] == ["a", "b"]
    async with jesus.Client(memcache_url) as client:
        assert await client.resolver.backend.list_instances("calc") == []  # deregistered


WORKER = textwrap.dedent(
    """
    import sys, anyio
    sys.path.insert(0, {root!r})
    from jesus.testing.registry import record
    from jesus_schema_memcache import MemcacheRegistry

    async def main(url, worker, count):
        backend = MemcacheRegistry(url)
        for i in range(count):
            await backend.register(record("race", f"w{{worker}}-{{i}}"), ttl=60)
        for i in range(0, count, 2):  # every other one leaves again
            await backend.deregister("race", f"w{{worker}}-{{i}}")

    anyio.run(main, sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    """
)


# The racing registrations run in worker processes, on asyncio whatever this test's loop:
# on trio it would run the same race again.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_concurrent_registrations_never_lose_one_another(
    memcache_url: str, tmp_path: Path, anyio_backend: str
) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=str(ROOT)))
    workers, count = 8, 20
    procs = [
        await anyio.open_process([sys.executable, str(script), memcache_url, str(w), str(count)])
        for w in range(workers)
    ]
    for proc in procs:
        assert await proc.wait() == 0
    backend = MemcacheRegistry(memcache_url)
    live = {r.instance_id for r in await backend.list_instances("race")}
    expected = {f"w{w}-{i}" for w in range(workers) for i in range(1, count, 2)}
    assert live == expected  # exactly the live ones: nothing lost, nothing left behind


async def test_memcached_outage_and_restart(own_memcached: Memcached, caplog: Any) -> None:
    url = f"memcache://{own_memcached.address}?prefix=outage"
    svc, _ = calculator()
    async with jesus.serve(svc, registry=url, ttl=1.5), jesus.Client(url) as client:
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2
        own_memcached.stop()
        # running services keep calling with what they cached
        for _ in range(5):
            client.resolver._cache["calc"] = (0.0, client.resolver._cache["calc"][1])  # stale
            assert await client.call("calc.add", {"a": 2, "b": 2}) == 4
        await anyio.sleep(1.0)  # a heartbeat fails meanwhile
        assert "registry heartbeat failed" in caplog.text
        assert caplog.text.count("registry unavailable, using cached instances") == 1  # once
        own_memcached.start()  # back, and empty
        fresh = MemcacheRegistry(url)
        with anyio.fail_after(10):
            while not await fresh.list_instances("calc"):
                await anyio.sleep(0.1)
        assert await client.call("calc.add", {"a": 3, "b": 3}) == 6
