"""What the memcached registry costs does not grow with the registry: heartbeats, an event's
listeners, the start-up check, removing gone instances. Bytes are counted by a proxy between
the backend and a real memcached; the big figures are in benchmarks/registry_scale.py."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from functools import partial
from typing import Any

import anyio
import pytest

import jesus
from jesus import event_names
from jesus.registry import lookups
from jesus.registry.base import InstanceRecord
from jesus.testing.registry import declaring, record
from jesus_schema_memcache import MemcacheRegistry, pages
from jesus_schema_memcache.store import Store
from tests.helpers import wait_until
from tests.memcache.conftest import Memcached
from tests.memcache.proxy import Counting, counting_proxy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def proxy(memcached_address: str) -> AsyncIterator[Counting]:
    async with counting_proxy(memcached_address) as counter:
        yield counter


@pytest.fixture
def backend(proxy: Counting) -> MemcacheRegistry:
    return MemcacheRegistry(f"memcache://{proxy.address}?prefix=t{uuid.uuid4().hex[:12]}")


async def register_all(backend: MemcacheRegistry, records: Iterable[InstanceRecord]) -> None:
    for r in records:
        await backend.register(r, ttl=30)


async def bytes_of(proxy: Counting, op: object, *args: object) -> int:
    before = proxy.moved
    await op(*args)  # type: ignore[operator]
    return proxy.moved - before


async def grow(
    backend: MemcacheRegistry, memcached: str, service: str, names: int, ids: int
) -> None:
    """`names` more service names and `ids` more instances of `service` in the indexes,
    written straight to `memcached`: the proxy carries (and counts) only what the backend
    moves, and the fill goes some three times faster."""
    host, _, port = memcached.rpartition(":")
    store = Store([(host, int(port))], backend.store.timeout, 1)

    def fill() -> None:
        for i in range(names):
            pages.add(store, backend.services_key(), f"other-service-{i:05d}")
        for i in range(ids):
            pages.add(store, backend.ids_key(service), f"instance-{i:05d}")

    await anyio.to_thread.run_sync(fill)


async def test_a_heartbeat_moves_the_same_bytes_however_large_the_registry(
    backend: MemcacheRegistry, proxy: Counting, memcached_address: str
) -> None:
    mine = record("calc", "mine")
    await backend.register(mine, ttl=30)
    assert await backend.is_registered("calc", "mine")
    small = (
        await bytes_of(proxy, backend.register, mine, 30),
        await bytes_of(proxy, backend.is_registered, "calc", "mine"),
    )
    await grow(
        backend, memcached_address, "calc", names=1500, ids=1500
    )  # both indexes past one page
    assert await backend.is_registered("calc", "mine")  # its pages changed: read once
    large = (
        await bytes_of(proxy, backend.register, mine, 30),
        await bytes_of(proxy, backend.is_registered, "calc", "mine"),
    )
    # A CAS value may gain a digit; the indexes grew by tens of KB.
    assert abs(large[0] - small[0]) < 16 and abs(large[1] - small[1]) < 16, (small, large)
    assert small[1] < 300, small  # a check is a meta get of four keys: no values
    assert await backend.is_registered("calc", "mine")


def large_record(service: str, instance: str, kilobytes: int) -> InstanceRecord:
    base = record(service, instance)
    method = base.methods["m"]
    methods = {
        f"m{i}": dataclasses.replace(method, description="x" * 1000) for i in range(kilobytes)
    }
    return dataclasses.replace(base, methods=methods)


async def test_renewing_and_rereading_a_record_move_its_head_not_its_content(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    big = large_record("calc", "big", kilobytes=200)
    await backend.register(big, ttl=30)
    assert await bytes_of(proxy, backend.register, big, 30) < 1000  # 200 KB record
    reader = MemcacheRegistry(backend.url)
    first = await bytes_of(proxy, reader.list_instances, "calc")
    again = await bytes_of(proxy, reader.list_instances, "calc")
    assert first > 200_000 and again < 1000, (first, again)
    (found,) = await reader.list_instances("calc")
    assert found.methods.keys() == big.methods.keys() and found.expires_at > time.time() + 25
    changed = dataclasses.replace(big, version="2.0.0")  # e.g. new sealing keys
    await backend.register(changed, ttl=30)
    assert [r.version for r in await reader.list_instances("calc")] == ["2.0.0"]


async def test_a_changed_page_is_read_again_once_and_only_that_page(
    backend: MemcacheRegistry, proxy: Counting, memcached_address: str
) -> None:
    mine = record("calc", "mine")
    await backend.register(mine, ttl=30)
    await grow(backend, memcached_address, "calc", names=0, ids=3000)  # several pages of ids
    assert await backend.is_registered("calc", "mine")
    await backend.register(record("calc", "newcomer"), ttl=30)  # changes one page at most
    moved = await bytes_of(proxy, backend.is_registered, "calc", "mine")
    assert moved < 2 * pages.PAGE_BYTES, moved
    assert await bytes_of(proxy, backend.is_registered, "calc", "mine") < 300


async def test_a_heartbeat_notices_each_membership_it_lost(backend: MemcacheRegistry) -> None:
    mine = record("calc", "mine")
    await backend.register(mine, ttl=30)
    assert await backend.is_registered("calc", "mine")
    chunk = backend.records.parts(backend.record_key("calc", "mine"))[0]
    for spoil in (
        lambda: backend.store.delete(chunk),  # its content, evicted: the head alone is not it
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


# ----------------------------------------------------------------------------- events


async def test_an_emitter_reads_only_the_listeners_of_its_event(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    await register_all(
        backend,
        [
            declaring("billing", "b1", listens=["orders.created"]),
            declaring("billing", "b2", listens=["orders.created"]),
            declaring("audit", "a1", listens=["orders.*"]),
            declaring("nosy", "n1", listens=["orders"]),  # not orders.created
            declaring("shipping", "s1", listens=["orders.shipped"]),
        ],
    )

    async def listeners() -> list[tuple[str, str]]:
        found = await lookups.listening(backend, "orders.created")
        return [(r.service, r.instance_id) for r in found]

    assert await listeners() == [("audit", "a1"), ("billing", "b1"), ("billing", "b2")]
    small = await bytes_of(proxy, listeners)
    await register_all(
        backend,
        (
            declaring(f"svc{i:03d}", "1", listens=[f"svc{i:03d}.changed", "orders.shipped"])
            for i in range(150)
        ),
    )
    assert await listeners() == [("audit", "a1"), ("billing", "b1"), ("billing", "b2")]
    large = await bytes_of(proxy, listeners)
    assert large == small, (small, large)


def test_the_patterns_an_event_is_looked_up_under() -> None:
    assert event_names.patterns_matching("a.b.c") == ["a.b.c", "a.b.*", "a.*"]
    assert event_names.patterns_matching("a") == ["a"]
    events = ["a", "a.b", "a.b.c", "a.bc", "ab.c", "x.a.b"]
    patterns = ["a", "a.*", "a.b", "a.b.*", "a.b.c", "a.b.c.*", "ab.*", "x.*"]
    for event in events:
        for pattern in patterns:
            indexed = pattern in event_names.patterns_matching(event)
            assert indexed is event_names.matches(pattern, event), (pattern, event)


def sink(name: str, pattern: str, seen: list[str]) -> jesus.Service:
    svc = jesus.Service(name)

    @svc.listener(pattern, channel="tcp+msgpack")
    async def on_event(data: Any) -> None:
        seen.append(name)

    return svc


async def test_emits_follow_listeners_that_come_and_go(memcache_url: str) -> None:
    seen: list[str] = []
    async with (
        jesus.Client(memcache_url, name="emitter") as client,
        jesus.serve(sink("first", "orders.*", seen), registry=memcache_url),
    ):
        client.resolver.refresh = 0.1
        assert await client.emit("orders.created", {}) == ["first"]
        async with jesus.serve(sink("second", "orders.created", seen), registry=memcache_url):

            async def both() -> bool:
                return await client.emit("orders.created", {}) == ["first", "second"]

            with anyio.fail_after(5):
                while not await both():
                    await anyio.sleep(0.05)
        # deregistered: the next refresh no longer lists it
        with anyio.fail_after(5):
            while await client.emit("orders.created", {}) != ["first"]:
                await anyio.sleep(0.05)
        await wait_until(lambda: seen.count("second") >= 1)
    assert (
        await MemcacheRegistry(memcache_url).find_services([("listens", "orders.created")]) == set()
    )


async def test_an_emitter_never_waits_for_a_frozen_registry(own_memcached: Memcached) -> None:
    url = f"memcache://{own_memcached.address}?prefix=emit&timeout=0.5"
    seen: list[str] = []
    assert own_memcached.proc is not None
    pid = own_memcached.proc.pid
    async with (
        jesus.serve(sink("listener", "tick", seen), registry=url, ttl=30),
        jesus.Client(url, name="emitter") as client,
    ):
        client.resolver.refresh = 0.05  # a refresh, stuck or failing, at every emit
        assert await client.emit("tick", {}) == ["listener"]
        longest, sent = 0.0, 0
        os.kill(pid, signal.SIGSTOP)
        try:
            stop = time.monotonic() + 1.5
            while time.monotonic() < stop:
                started = time.monotonic()
                assert await client.emit("tick", {}) == ["listener"]
                longest = max(longest, time.monotonic() - started)
                sent += 1
                await anyio.sleep(0.002)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert sent > 50
        assert longest < 0.1, longest
        await wait_until(lambda: len(seen) >= sent)


# ----------------------------------------------------------------------------- start-up


async def test_a_starting_service_reads_only_what_it_touches(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    new = declaring(
        "orders", "new", listens=["billing.*"], emits=["orders.placed"], uses=["billing.charge"]
    )
    await register_all(
        backend,
        [
            declaring("orders", "old"),  # another version of itself
            declaring("billing", "b1", emits=["billing.charged"]),  # provider, emitter
            declaring("shop", "s1", uses=["orders.place"]),  # a caller of it
            declaring("audit", "a1", listens=["orders.*"]),  # a listener of what it emits
            declaring("bystander", "x1", listens=["other.event"], uses=["elsewhere.m"]),
        ],
    )

    async def related() -> list[tuple[str, str]]:
        return sorted((r.service, r.instance_id) for r in await lookups.related(backend, [new]))

    expected = [("audit", "a1"), ("billing", "b1"), ("orders", "old"), ("shop", "s1")]
    assert await related() == expected
    small = await bytes_of(proxy, related)
    await register_all(
        backend,
        (
            declaring(f"svc{i:03d}", "1", listens=["other.event"], uses=[f"svc{i + 1:03d}.m"])
            for i in range(150)
        ),
    )
    assert await related() == expected
    assert await bytes_of(proxy, related) == small


def _incompatible_checks() -> list[Any]:
    from tests.integration import test_compat_start as compat

    return [
        compat.test_a_caller_refuses_to_start_against_a_provider_it_would_break,
        compat.test_a_new_provider_version_is_checked_against_live_callers_and_versions,
        compat.test_event_schemas_are_checked,
    ]


@pytest.mark.parametrize("check", _incompatible_checks(), ids=lambda c: c.__name__[5:])
async def test_the_start_up_checks_hold_on_memcached(check: Any, memcache_url: str) -> None:
    await check(memcache_url)


async def test_a_listener_is_checked_against_the_emitters_already_running(
    memcache_url: str,
) -> None:
    emitter = jesus.Service("accounts")
    emitter.emitter("user.created", schema={"type": "object", "required": ["id"]})
    listener = jesus.Service("audit")

    @listener.listener("user.*", schema={"type": "object", "required": ["id", "email"]})
    async def on_user(data: Any) -> None:
        pass

    async with jesus.serve(emitter, registry=memcache_url):
        with pytest.raises(
            jesus.IncompatibleSchemas, match=r"event user\.created: accounts -> audit"
        ):
            async with jesus.serve(listener, registry=memcache_url):
                pass


# ----------------------------------------------------------------------------- leaving


async def big_service(backend: MemcacheRegistry, service: str, count: int) -> list[str]:
    """`count` live instances of `service`, written straight into memcached (two pages of
    ids), the way registrations would leave them."""
    ids = [f"instance-{i:05d}" for i in range(count)]

    def write() -> None:
        pages_: dict[int, list[str]] = {0: [], 1: []}
        for i in ids:
            pages_[pages.slot(i, level=1)].append(i)
        store = backend.store
        for i in ids:
            backend.records.write(
                backend.record_key(service, i),
                {**record(service, i).to_json(), "expires_at": time.time() + 60},
                60,
            )
        key = backend.ids_key(service)
        store.set(pages.levels_key(key), b"1", 0)
        for number, members in pages_.items():
            store.set(pages.page_key(key, 1, number), pages.encode(members), 0)
        pages.add(store, backend.services_key(), service)

    await anyio.to_thread.run_sync(write)
    return ids


async def test_a_vanished_instance_costs_one_page_to_remove(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    ids = await big_service(backend, "big", 1500)
    assert len(await backend.list_instances("big")) == 1500  # records read once
    await anyio.to_thread.run_sync(backend.store.delete, backend.record_key("big", ids[7]))
    first = await bytes_of(proxy, backend.list_instances, "big")  # finds it gone
    listing = await bytes_of(proxy, backend.list_instances, "big")  # the same, minus that
    assert len(await backend.list_instances("big")) == 1499
    removing = first - listing
    assert 0 < removing < 2 * pages.PAGE_BYTES + 1024, removing  # one page read and written
    assert listing > 2 * pages.PAGE_BYTES  # however large the service's index


async def test_deregistering_costs_one_page_whatever_the_size_of_the_service(
    backend: MemcacheRegistry, proxy: Counting
) -> None:
    await big_service(backend, "big", 1500)
    mine = record("big", "mine")
    await backend.register(mine, ttl=30)
    moved = await bytes_of(proxy, backend.deregister, "big", "mine")
    assert moved < 2 * pages.PAGE_BYTES + 1024, moved  # its page, read and written
    listed = {r.instance_id for r in await backend.list_instances("big")}
    assert len(listed) == 1500 and "mine" not in listed


def keys_of(backend: MemcacheRegistry, r: InstanceRecord) -> list[str]:
    return [
        backend.index_key(kind, key) for kind, keys in lookups.index_keys(r).items() for key in keys
    ]


async def names_in(backend: MemcacheRegistry, keys: list[str]) -> set[str]:
    def read() -> set[str]:
        listing = pages.read(backend.store, keys)
        return {name for key in keys for name in listing.of(key)}

    found: set[str] = await anyio.to_thread.run_sync(read)
    return found


async def test_services_that_come_and_go_are_forgotten(backend: MemcacheRegistry) -> None:
    comers = [
        declaring(f"temp{i:03d}", "1", listens=["a.b"], emits=[f"e{i}.x"], uses=["p.m"])
        for i in range(60)
    ]
    stays = declaring("stays", "1", listens=["a.b"], emits=["e0.x"], uses=["p.m"])
    await backend.register(stays, ttl=30)
    await register_all(backend, comers)
    for r in comers:
        await backend.deregister(r.service, r.instance_id)
    assert await names_in(backend, [backend.services_key()]) == {"stays"}
    every_key = sorted({k for r in [*comers, stays] for k in keys_of(backend, r)})
    assert await names_in(backend, every_key) == {"stays"}
    assert [r.service for r in await backend.list_instances()] == ["stays"]


async def test_a_service_whose_instances_vanished_is_forgotten_by_the_next_reader(
    backend: MemcacheRegistry,
) -> None:
    gone = declaring("gone", "1", listens=["a.b"], emits=["c.d"], uses=["p.m"])
    await backend.register(gone, ttl=30)
    await backend.register(declaring("other", "1"), ttl=30)
    await anyio.to_thread.run_sync(backend.store.delete, backend.record_key("gone", "1"))
    # an emitter of a.b finds the name in the index, no instance behind it: forgotten there
    assert await lookups.listening(backend, "a.b") == []
    assert await names_in(backend, [backend.services_key()]) == {"other"}
    assert await names_in(backend, keys_of(backend, gone)) == set()
    assert await names_in(backend, [backend.ids_key("gone")]) == set()


async def test_a_name_forgotten_while_an_instance_registers_is_put_back(
    backend: MemcacheRegistry,
) -> None:
    """What a reader that forgets a name sees when an instance registered meanwhile: its id
    is there again, so it puts the name back at once."""
    arriving = declaring("arriving", "1", listens=["a.b"], uses=["p.m"])
    await backend.register(arriving, ttl=30)
    await anyio.to_thread.run_sync(backend._forget, "arriving")
    assert await names_in(backend, [backend.services_key()]) == {"arriving"}
    assert await names_in(backend, keys_of(backend, arriving)) == {"arriving"}
    assert [r.service for r in await lookups.listening(backend, "a.b")] == ["arriving"]


# ----------------------------------------------------------------------------- limits


def rich_service(name: str, methods: int) -> jesus.Service:
    """A service whose record is about 20 KB per method (long descriptions: checking rich
    schemas at declaration would take longer than the test)."""
    svc = jesus.Service(name)
    schema = {"type": "object", "properties": {"field_0": {"type": "string"}}}
    for i in range(methods):

        @svc.method(f"m{i}", request=schema, response=schema, description=f"{i} " * 10_000)
        async def handler(data: Any) -> Any:
            return data

    return svc


async def test_a_record_past_the_item_limit_is_written_in_chunks(memcache_url: str) -> None:
    svc = rich_service("huge", 60)
    async with (
        jesus.serve(svc, registry=memcache_url),
        jesus.Client(memcache_url) as client,
    ):
        backend = client.resolver.backend
        assert isinstance(backend, MemcacheRegistry)
        (found,) = await backend.list_instances("huge")
        assert len(json.dumps(found.to_json())) > 1024 * 1024  # past memcached's 1 MB
        assert set(found.methods) == set(svc.methods)
        assert await client.call("huge.m59", {"field_0": "x"}) == {"field_0": "x"}
        # a renewal touches the chunks and writes the head: still whole
        await backend.register(found, ttl=10)
        (again,) = await backend.list_instances("huge")
        assert again.methods == found.methods and again.expires_at > found.expires_at
    assert await MemcacheRegistry(memcache_url).list_instances("huge") == []


async def test_a_record_memcached_cannot_hold_refuses_the_start_naming_the_limit() -> None:
    small = Memcached(options=("-I", "256k", "-o", "slab_chunk_max=131072"))  # items ≤ 256 KiB
    await anyio.to_thread.run_sync(small.start)
    try:
        url = f"memcache://{small.address}?prefix=limit"
        with pytest.raises(jesus.RegistryLimit, match=r"item size limit \(memcached -I"):
            async with jesus.serve(rich_service("huge", 40), registry=url):
                pytest.fail("started although no one can see it")
        async with jesus.serve(rich_service("fine", 3), registry=url):  # small ones do
            assert [r.service for r in await MemcacheRegistry(url).list_instances()] == ["fine"]
    finally:
        await anyio.to_thread.run_sync(small.stop)


# ----------------------------------------------------------------------------- failures named


async def test_a_node_that_is_down_is_named() -> None:
    from tests.memcache.conftest import free_port

    backend = MemcacheRegistry(f"memcache://127.0.0.1:{free_port()}?prefix=down")
    with pytest.raises(
        jesus.RegistryError, match=r"127\.0\.0\.1:\d+ is down \(connection refused\)"
    ):
        await backend.register(record("calc", "1"), ttl=30)


async def test_a_node_out_of_connections_is_named() -> None:
    full = Memcached(options=("-c", "40"))
    await anyio.to_thread.run_sync(partial(full.start, stores=False))  # it is refused
    held = []
    try:
        for _ in range(60):
            held.append(await anyio.connect_tcp("127.0.0.1", full.port))
        backend = MemcacheRegistry(f"memcache://{full.address}?prefix=full")
        with pytest.raises(jesus.RegistryError, match=r"refuses more connections.*memcached -c"):
            await backend.register(record("calc", "1"), ttl=30)
    finally:
        for stream in held:
            await stream.aclose()
        await anyio.to_thread.run_sync(full.stop)


async def test_a_cluster_routes_around_a_node_that_is_down(memcached_address: str) -> None:
    from tests.memcache.conftest import free_port

    dead = f"127.0.0.1:{free_port()}"
    backend = MemcacheRegistry(f"memcache://{memcached_address},{dead}?prefix=c{uuid.uuid4().hex}")
    errors = []
    for i in range(20):  # some keys live on the dead node: the first use of it fails, named
        try:
            await backend.register(record("calc", f"i{i}"), ttl=30)
        except jesus.RegistryError as exc:
            errors.append(str(exc))
    assert errors == [f"memcached at {dead} is down (connection refused)"] or errors == [], errors
    assert len(await backend.list_instances("calc")) >= 19


# ----------------------------------------------------------------------------- connections


async def test_services_served_through_one_backend_share_its_connection(proxy: Counting) -> None:
    """What a node daemon does for the processes of its machine: one backend for every set
    of services it serves, one connection to memcached (`?connections=1`)."""
    url = f"memcache://{proxy.address}?prefix=t{uuid.uuid4().hex[:12]}&connections=1"
    shared = MemcacheRegistry(url)
    names = [f"svc{i}" for i in range(5)]
    async with contextlib.AsyncExitStack() as stack:
        for name in names:
            svc = jesus.Service(name)

            @svc.method()
            async def ping(data: Any) -> str:
                return "pong"

            await stack.enter_async_context(jesus.serve(svc, registry=shared, ttl=3))
        await anyio.sleep(1.2)  # a check of each, every second
        assert {r.service for r in await shared.list_instances()} == set(names)
        assert proxy.open == 1
    assert await shared.list_instances() == []  # deregistered, and the backend still open
    await shared.aclose()
