"""Registry conformance: what every backend must do. Run here against the embedded one; a
third-party backend can run the same class with its own `backend` fixture."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
from jesus.messages import ResponseMode
from jesus.registry.embedded import EmbeddedRegistry, default_directory
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
