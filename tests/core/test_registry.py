"""Registry conformance: what every backend must do. Run here against the embedded one; a
third-party backend can run the same class with its own `backend` fixture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
from jesus.messages import ResponseMode
from jesus.registry.base import InstanceRecord, MethodRecord
from jesus.registry.embedded import EmbeddedRegistry

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


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
        (back,) = await backend.list_instances("a")
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
        for _ in range(4):
            await backend.register(record("a", "1"), ttl=0.5)
            await anyio.sleep(0.25)
        assert len(await backend.list_instances("a")) == 1

    async def test_unknown_service_is_empty(self, backend: Any) -> None:
        assert await backend.list_instances("nobody") == []


class TestEmbeddedRegistry(RegistryConformance):
    @pytest.fixture
    def backend(self, tmp_path: Path) -> EmbeddedRegistry:
        return EmbeddedRegistry(f"embedded://{tmp_path}")

    async def test_corrupt_files_are_skipped(self, backend: EmbeddedRegistry) -> None:
        await backend.register(record("a", "1"), ttl=30)
        (backend.directory / "a@bad.json").write_text("{not json")
        assert [r.instance_id for r in await backend.list_instances("a")] == ["1"]


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


async def test_services_in_separate_processes_find_each_other(registry: str) -> None:
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
