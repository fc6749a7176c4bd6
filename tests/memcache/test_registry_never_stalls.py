"""The registry never stalls a call: a memcached that restarts empty or freezes, against real
memcached processes and real servers on 127.0.0.1. Calls with a cached route keep going;
the service registers again at once; registry operations time out instead of hanging."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import pytest

import jesus
import jesus.runtime.node
from jesus.registry.resolver import Resolver
from jesus_schema_memcache import MemcacheRegistry
from tests.helpers.services import calculator
from tests.memcache.conftest import Memcached, raw_client

pytestmark = pytest.mark.anyio

TTL = 30.0  # heartbeats every 10 s: far longer than any bound asserted below


async def _call_until(client: jesus.Client, stop: anyio.Event, seen: dict[str, Any]) -> None:
    """Call calc.add back to back until `stop`, recording each call's latency and error."""
    i = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            assert await client.call("calc.add", {"a": i, "b": 1}, timeout=5) == i + 1
        except jesus.JesusError as exc:
            seen["errors"].append(exc)
        seen["latencies"].append(time.monotonic() - started)
        i += 1
        await anyio.sleep(0.005)


def _seen() -> dict[str, Any]:
    return {"errors": [], "latencies": []}


async def test_memcached_restarted_empty(own_memcached: Memcached) -> None:
    url = f"memcache://{own_memcached.address}?prefix=restart"
    svc, _ = calculator()
    async with jesus.serve(svc, registry=url, ttl=TTL), jesus.Client(url) as client:
        client.resolver.refresh = 0.1  # refresh often, so that it meets the empty registry
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2
        port, seen, stop = own_memcached.port, _seen(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_call_until, client, stop, seen)
            await anyio.to_thread.run_sync(own_memcached.stop)
            await anyio.to_thread.run_sync(own_memcached.start)  # empty
            back = time.monotonic()
            assert own_memcached.port == port, "memcached came back on another port"
            fresh = MemcacheRegistry(url)
            with anyio.fail_after(10):
                while not await fresh.list_instances("calc"):
                    await anyio.sleep(0.05)
            registered_again = time.monotonic() - back
            await anyio.sleep(0.5)  # calls go on past the re-registration
            stop.set()
        await fresh.aclose()
        assert seen["errors"] == [], seen["errors"][:3]
        assert len(seen["latencies"]) > 20
        # at once: the node checks every second, its heartbeat would come after 10 s
        assert registered_again < 4.0, registered_again


async def test_an_emptied_registry_does_not_empty_the_cache(
    memcache_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flush_all, with the node's prompt check turned off (so the registry stays empty):
    the callers that had a route keep it until the records' TTL runs out, while a caller
    that never saw the service is told it is not there."""
    monkeypatch.setattr(jesus.runtime.node, "CHECK_EVERY", 1e6)
    svc, _ = calculator()
    async with (
        jesus.serve(svc, registry=memcache_url, ttl=TTL),
        jesus.Client(memcache_url) as client,
    ):
        client.resolver.refresh = 0.05
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2
        backend = MemcacheRegistry(memcache_url)
        await anyio.to_thread.run_sync(raw_client(memcache_url).flush_all)
        assert await backend.list_instances("calc") == []
        seen, stop = _seen(), anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_call_until, client, stop, seen)
            await anyio.sleep(1.0)  # twenty refreshes that each answered "none"
            stop.set()
        assert seen["errors"] == [], seen["errors"][:3]
        assert len(seen["latencies"]) > 20
        assert await backend.list_instances("calc") == []  # still empty: the cache held
        async with jesus.Client(memcache_url) as newcomer:
            with pytest.raises(jesus.ServiceNotFound):
                await newcomer.call("calc.add", {"a": 1, "b": 1})
        await backend.aclose()


async def test_memcached_frozen(own_memcached: Memcached) -> None:
    # Socket timeouts of 0.5 s: a frozen memcached fails each operation after that.
    url = f"memcache://{own_memcached.address}?prefix=frozen&timeout=0.5"
    svc, _ = calculator()
    freeze = 3.0
    assert own_memcached.proc is not None
    pid = own_memcached.proc.pid
    async with jesus.serve(svc, registry=url, ttl=TTL), jesus.Client(url) as client:
        client.resolver.refresh = 0.1  # a refresh, stuck or failing, all through the freeze
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2
        seen, stop = _seen(), anyio.Event()
        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_call_until, client, stop, seen)
                # a registry operation fails after its timeout instead of hanging
                started = time.monotonic()
                with pytest.raises(
                    jesus.RegistryError, match=r"did not answer \(get\) within 0\.5s"
                ):
                    await client.resolver.backend.list_instances("calc")
                listing = time.monotonic() - started
                # a look-up that never saw the service waits, but only `timeout`
                cold = Resolver(client.resolver.backend, timeout=0.3)
                started = time.monotonic()
                with pytest.raises(jesus.RegistryError):
                    await cold.pick("calc")
                looking_up = time.monotonic() - started
                await anyio.sleep(max(0.0, freeze - (time.monotonic() - frozen_at)))
                stop.set()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert seen["errors"] == [], seen["errors"][:3]
        assert len(seen["latencies"]) > 20
        assert max(seen["latencies"]) < 0.5, max(seen["latencies"])
        assert listing < 2.0, listing
        assert looking_up < 2.0, looking_up
        # after the freeze the registry answers again
        with anyio.fail_after(10):
            while not await client.resolver.backend.list_instances("calc"):
                await anyio.sleep(0.05)
        assert await client.call("calc.add", {"a": 2, "b": 2}) == 4


def test_a_bad_timeout_in_the_url_is_refused() -> None:
    assert MemcacheRegistry("memcache://127.0.0.1:1?timeout=0.25").timeout == 0.25
    for bad in ("0", "-1", "soon", "nan", "inf"):
        with pytest.raises(jesus.ConfigurationError, match="timeout"):
            MemcacheRegistry(f"memcache://127.0.0.1:1?timeout={bad}")
