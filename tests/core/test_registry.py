"""Registry conformance: what every backend must do. Run here against the embedded one; a
third-party backend can run the same class with its own `backend` fixture."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

import jesus
from jesus.registry.embedded import EmbeddedRegistry
from jesus.testing.registry import RegistryConformance, record

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


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
