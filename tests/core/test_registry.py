"""Registry conformance: what every backend must do. Run here against the embedded one; a
third-party backend can run the same class with its own `backend` fixture."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
from jesus.messages import ResponseMode
from jesus.registry.base import InstanceRecord
from jesus.registry.embedded import EmbeddedRegistry, default_directory
from jesus.registry.resolver import Resolver
from jesus.testing.registry import record
from tests.helpers.registry import TimedOnce
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


class TestEmbeddedRegistry(TimedOnce):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> EmbeddedRegistry:
        return EmbeddedRegistry(f"embedded://{tmp_path}")

    async def test_corrupt_files_are_skipped(self, backend: EmbeddedRegistry) -> None:
        await backend.register(record("a", "1"), ttl=30)
        (backend.directory / "a@bad.json").write_text("{not json")
        assert [r.instance_id for r in await backend.list_instances("a")] == ["1"]


# ----------------------------------------------------------------- PROTOCOL.md, "Registry records":
# records written by hand, as a writer that is not jesus would, following the documented rules.


MISSING: Any = object()


def foreign_record(**fields: Any) -> dict[str, Any]:
    raw = {
        "service": "calc",
        "instance_id": "go-1",
        "endpoints": {"tcp": "tcp://127.0.0.1:4000"},
        "expires_at": time.time() + 30,
        "methods": {"add": {"channel": "tcp+json+none", "mode": "response"}},
        "host": "elsewhere",
        "pid": 1234,
        **fields,
    }
    return {k: v for k, v in raw.items() if v is not MISSING}


def write_by_hand(directory: Path, raw: dict[str, Any], name: str = "calc@go-1.json") -> Path:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = directory / ".tmp-go-writer"  # same directory, a name readers never list
    tmp.write_text(json.dumps(raw))
    return tmp.replace(directory / name)


async def test_a_foreign_writers_record_is_found(tmp_path: Path) -> None:
    registry = EmbeddedRegistry(f"embedded://{tmp_path}")
    write_by_hand(tmp_path, foreign_record())
    (found,) = await registry.list_instances("calc")
    assert (found.instance_id, found.endpoints["tcp"]) == ("go-1", "tcp://127.0.0.1:4000")
    assert found.methods["add"].channel == "tcp+json+none"
    assert found.methods["add"].mode is ResponseMode.RESPONSE
    assert found.methods["add"].request is True  # an absent schema accepts anything
    assert found.version == "0"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"endpoints": MISSING}, "'endpoints'"),
        ({"expires_at": MISSING}, "'expires_at'"),
        ({"service": 5}, "'service'"),
        ({"endpoints": {"tcp": None}}, "'endpoints'"),
        ({"pid": "1234"}, "'pid'"),
        ({"expires_at": True}, "'expires_at'"),
        ({"methods": {"add": {"mode": "response"}}}, "'channel'"),
        ({"instance_id": "other"}, "file name"),  # the name must be SERVICE@INSTANCE_ID.json
    ],
)
async def test_a_bad_record_is_skipped_with_one_warning_and_left_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, change: dict[str, Any], named: str
) -> None:
    registry = EmbeddedRegistry(f"embedded://{tmp_path}")
    path = write_by_hand(tmp_path, foreign_record(**change))
    write_by_hand(tmp_path, foreign_record(instance_id="go-2"), "calc@go-2.json")
    with caplog.at_level(logging.WARNING, logger="jesus.registry.embedded"):
        for _ in range(2):
            assert [r.instance_id for r in await registry.list_instances("calc")] == ["go-2"]
    (warning,) = caplog.records
    assert path.name in warning.getMessage() and named in warning.getMessage()
    assert path.exists()


async def test_a_fixed_then_broken_record_is_reported_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = EmbeddedRegistry(f"embedded://{tmp_path}")
    broken = foreign_record(endpoints=MISSING)
    with caplog.at_level(logging.WARNING, logger="jesus.registry.embedded"):
        for raw in (broken, foreign_record(), broken):
            write_by_hand(tmp_path, raw)
            await registry.list_instances("calc")
    assert len(caplog.records) == 2


async def test_an_expired_record_is_deleted(tmp_path: Path) -> None:
    registry = EmbeddedRegistry(f"embedded://{tmp_path}")
    path = write_by_hand(tmp_path, foreign_record(expires_at=time.time() - 1))
    assert await registry.list_instances() == []
    assert not path.exists()


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_a_local_record_whose_process_is_gone_is_deleted(
    tmp_path: Path, dead_pid: int
) -> None:
    registry = EmbeddedRegistry(f"embedded://{tmp_path}")
    path = write_by_hand(tmp_path, foreign_record(host=os.uname().nodename, pid=dead_pid))
    elsewhere = write_by_hand(tmp_path, foreign_record(instance_id="go-2"), "calc@go-2.json")
    # the pid is only checked on the same host: elsewhere it may be anyone's
    assert [r.instance_id for r in await registry.list_instances("calc")] == ["go-2"]
    assert not path.exists() and elsewhere.exists()


def test_the_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert default_directory() == tmp_path / f"jesus-registry-{os.getuid()}"
    assert EmbeddedRegistry("embedded://").directory == default_directory()
    monkeypatch.setenv("XDG_RUNTIME_DIR", "")
    assert default_directory() == Path(tempfile.gettempdir()) / f"jesus-registry-{os.getuid()}"


async def test_a_written_record_follows_the_rules(tmp_path: Path) -> None:
    registry = EmbeddedRegistry(f"embedded://{tmp_path / 'new'}")
    await registry.register(record("a", "1"), ttl=30)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["a@1.json"]  # no temporary left
    raw = json.loads((tmp_path / "new" / "a@1.json").read_text())
    assert time.time() < raw["expires_at"] <= time.time() + 30


def test_embedded_registry_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from jesus.plugins import default_catalog
    from jesus.registry.open import open_registry

    monkeypatch.delenv("JESUS_REGISTRY", raising=False)
    assert isinstance(open_registry(None, default_catalog()), EmbeddedRegistry)


def _serve(registry: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jesus",
            "serve",
            "tests.helpers.served:calc",
            "--registry",
            registry,
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


# The services run in processes of their own: what is tested is how they find each other
# through the registry, not the client's loop (the transport tests run it on each).
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_services_in_separate_processes_find_each_other(
    registry: str, anyio_backend: str
) -> None:
    procs = [_serve(registry), _serve(registry)]
    try:
        async with jesus.Client(registry) as client:
            with anyio.fail_after(30):
                while len(await client.resolver.backend.list_instances("calc")) < 2:
                    await anyio.sleep(0.1)
            assert await client.call("calc.add", {"a": 1, "b": 2}) == 3
            # one dies without deregistering: it drops out, calls go to the other
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait()
            started = time.monotonic()
            with anyio.fail_after(15):
                while len(await client.resolver.backend.list_instances("calc")) != 1:
                    await anyio.sleep(0.1)
            assert time.monotonic() - started < 11  # the default TTL is 10 s
            for i in range(10):
                assert await client.call("calc.add", {"a": i, "b": 0}) == i
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        assert procs[1].wait(timeout=15) == 0  # a clean drain on SIGTERM


# ----------------------------------------------------------------- the Resolver: the registry never
# stalls a call. FakeRegistry is a stand-in backend, fine for these unit tests of the resolver's
# own rules; the real thing (memcached restarted, flushed, frozen) is in
# tests/memcache/test_registry_never_stalls.py.


class FakeRegistry:
    """Answers `listing`, or waits for `gate` (set: open) and counts the listings asked."""

    url = "fake://"

    def __init__(self, *listing: InstanceRecord) -> None:
        self.listing = list(listing)
        self.asked = 0
        self.gate = anyio.Event()
        self.gate.set()
        self.fail = False
        self.crash: Exception | None = None  # a client library's own bug

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        self.asked += 1
        await self.gate.wait()
        if self.fail:
            raise jesus.RegistryError("down")
        if self.crash is not None:
            raise self.crash
        return [r for r in self.listing if service in (None, r.service)]

    def close_gate(self) -> None:
        self.gate = anyio.Event()

    async def register(self, record: InstanceRecord, ttl: float) -> None:
        raise NotImplementedError  # a resolver only lists

    async def deregister(self, service: str, instance_id: str) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def live(service: str, instance: str, ttl: float = 30.0) -> InstanceRecord:
    return dataclasses.replace(record(service, instance), expires_at=time.time() + ttl)


@asynccontextmanager
async def bound(resolver: Resolver) -> AsyncIterator[Resolver]:
    """The resolver bound to a task group, as a Client binds it."""
    async with anyio.create_task_group() as tg:
        resolver.bind(tg)
        try:
            yield resolver
        finally:
            resolver.unbind(tg)
            tg.cancel_scope.cancel()


async def settle(resolver: Resolver) -> None:
    """Until no background refresh is under way."""
    with anyio.fail_after(5):
        while resolver._refreshing:
            await anyio.sleep(0.01)


async def test_a_stale_entry_is_served_at_once_and_refreshed_once_in_the_background() -> None:
    fake = FakeRegistry(live("a", "1"))
    async with bound(Resolver(fake, refresh=0.0)) as resolver:
        first = await resolver.pick("a")
        fake.close_gate()  # the registry hangs from now on
        fake.listing = [live("a", "1"), live("a", "2")]
        with anyio.fail_after(1):  # never waits for the registry
            for _ in range(50):
                assert await resolver.pick("a") == first
                await anyio.sleep(0.001)
        assert fake.asked == 2  # the first look-up, then one refresh at a time
        fake.gate.set()
        await settle(resolver)
        assert {r.instance_id for r in await resolver.pick("a")} == {"1", "2"}


async def test_only_a_cold_lookup_waits_and_callers_share_it() -> None:
    fake = FakeRegistry(live("a", "1"))
    fake.close_gate()
    resolver = Resolver(fake)
    found: list[list[InstanceRecord]] = []

    async def lookup() -> None:
        found.append(await resolver.pick("a"))

    async with bound(resolver), anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(lookup)
        await anyio.sleep(0.05)
        assert found == []  # waiting, for one look-up
        fake.gate.set()
    assert fake.asked == 1 and len(found) == 10


async def test_a_hanging_registry_fails_a_cold_lookup_after_the_timeout() -> None:
    fake = FakeRegistry(live("a", "1"))
    fake.close_gate()  # never opens
    resolver = Resolver(fake, timeout=0.2)
    started = time.monotonic()
    with anyio.fail_after(5), pytest.raises(jesus.RegistryError, match=r"within 0\.2s"):
        await resolver.pick("a")
    assert time.monotonic() - started < 2


async def test_an_unbound_resolver_refreshes_inline_within_the_timeout() -> None:
    fake = FakeRegistry(live("a", "1"))
    resolver = Resolver(fake, refresh=0.0, timeout=0.2)
    first = await resolver.pick("a")
    fake.close_gate()
    with anyio.fail_after(5):
        assert await resolver.pick("a") == first  # the cached route, after the timeout


async def test_a_sudden_empty_answer_is_suspect_until_the_records_expire() -> None:
    ttl = 0.6
    fake = FakeRegistry(live("a", "1", ttl), live("b", "1", 30))
    async with bound(Resolver(fake, refresh=0.0)) as resolver:
        (kept,) = await resolver.pick("a")
        assert {r.service for r in await resolver.everyone()} == {"a", "b"}
        fake.listing = [live("b", "1", 30)]  # the registry lost "a" (restarted empty, flushed)
        for _ in range(3):  # answered "none" by refreshes, and still served
            await resolver.pick("a")
            await settle(resolver)
            assert await resolver.pick("a") == [kept]
            assert {r.service for r in await resolver.everyone()} == {"a", "b"}
            await settle(resolver)
        with anyio.fail_after(5):  # believed once its record would have expired
            while True:
                try:
                    await resolver.pick("a")
                except jesus.ServiceNotFound:
                    break
                await anyio.sleep(0.02)
        assert time.time() >= kept.expires_at
        with anyio.fail_after(5):
            while {r.service for r in await resolver.everyone()} != {"b"}:
                await anyio.sleep(0.02)


async def test_fewer_instances_are_believed_at_once() -> None:
    """Only "none" is suspect: one instance of two gone is a deregistration."""
    fake = FakeRegistry(live("a", "1"), live("a", "2"))
    async with bound(Resolver(fake, refresh=0.0)) as resolver:
        assert len(await resolver.pick("a")) == 2
        fake.listing = [live("a", "2")]
        await resolver.pick("a")
        await settle(resolver)
        assert [r.instance_id for r in await resolver.pick("a")] == ["2"]


async def test_a_kept_record_whose_instance_fails_is_dropped() -> None:
    fake = FakeRegistry(live("a", "1"))
    async with bound(Resolver(fake, refresh=0.0)) as resolver:
        (kept,) = await resolver.pick("a")
        fake.listing = []
        await resolver.pick("a")
        await settle(resolver)
        assert await resolver.pick("a") == [kept]  # suspect: kept
        resolver.mark_failed(kept)  # ...but its instance cannot be reached: it is gone
        asked = fake.asked
        with pytest.raises(jesus.ServiceNotFound):
            await resolver.pick("a")
        assert fake.asked == asked + 1  # asked again, and believed


async def test_a_failed_instance_goes_last_without_waiting_for_the_registry() -> None:
    fake = FakeRegistry(live("a", "1"), live("a", "2"))
    async with bound(Resolver(fake, refresh=60.0)) as resolver:
        first, second = await resolver.pick("a", rotate=False)
        fake.close_gate()
        resolver.mark_failed(first)
        with anyio.fail_after(1):
            assert await resolver.pick("a", rotate=False) == [second, first]
            while fake.asked < 2:  # and a refresh was started
                await anyio.sleep(0.01)
        fake.gate.set()


async def test_a_failing_refresh_is_retried_after_the_refresh_interval_not_at_every_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeRegistry(live("a", "1"))
    async with bound(Resolver(fake, refresh=60.0)) as resolver:
        route = await resolver.pick("a")
        fake.fail = True
        resolver.forget("a")
        with pytest.raises(jesus.RegistryError):  # cold: nothing to serve
            await resolver.pick("a")
        fake.fail = False
        route = await resolver.pick("a")
        fake.fail = True
        resolver._cache["a"] = (float("-inf"), route)  # stale
        asked = fake.asked
        for _ in range(20):
            assert await resolver.pick("a") == route
            await settle(resolver)
        assert fake.asked == asked + 1
        assert caplog.text.count("registry unavailable, using cached instances") == 1


async def test_a_backend_that_crashes_is_a_registry_error_not_a_dead_client() -> None:
    """pymemcache once raised AttributeError reading a socket closed under it, in a
    background refresh: that took the whole client down. Anything a backend raises is a
    RegistryError, and a refresh that meets one keeps the cached route."""
    fake = FakeRegistry(live("a", "1"))
    async with bound(Resolver(fake, refresh=0.0)) as resolver:
        route = await resolver.pick("a")
        fake.crash = AttributeError("'NoneType' object has no attribute 'recv'")
        for _ in range(5):
            assert await resolver.pick("a") == route  # stale, refreshed in the background
            await settle(resolver)
        resolver.forget("a")
        with pytest.raises(jesus.RegistryError, match="AttributeError"):
            await resolver.pick("a")


async def test_a_node_registers_again_at_once_when_its_record_vanishes(registry: str) -> None:
    """The embedded registry has no cheap look-up: the node lists its services instead."""
    svc, _ = calculator()
    async with jesus.serve(svc, registry=registry, ttl=30) as node:  # heartbeat every 10 s
        backend = EmbeddedRegistry(registry)
        (path,) = backend.directory.glob("calc@*.json")
        path.unlink()
        started = time.monotonic()
        with anyio.fail_after(10):
            while not await backend.list_instances("calc"):
                await anyio.sleep(0.05)
        assert time.monotonic() - started < 4
        assert [r.instance_id for r in await backend.list_instances("calc")] == [
            node.records[0].instance_id
        ]
    assert await backend.list_instances("calc") == []  # and not again once deregistered
