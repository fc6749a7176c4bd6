"""The daemon's health endpoints as a kubelet probes them: plain HTTP/1.1 over loopback TCP,
ready only while the registry answers (a real memcached started and stopped under it)."""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import anyio.to_thread
import pytest

from jesus.errors import ConfigurationError
from jesus.plugins import default_catalog
from jesus.registry.base import InstanceRecord
from jesus.registry.open import open_registry
from jesus_daemon import run_daemon
from jesus_daemon.health import LIVE_PATH, MAX_HEAD, READY_PATH, Readiness
from tests.daemon.test_cli import _start, _stop
from tests.daemon.test_relay import socket_dir  # noqa: F401  (the fixture)
from tests.memcache.conftest import Memcached


async def exchange(address: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is, read until the server closes: (status, headers, body)."""
    host, _, port = address.rpartition(":")
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(request)
            answer = b""
            while True:
                try:
                    answer += await stream.receive()
                except anyio.EndOfStream:
                    break
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status), headers, body


async def get(address: str, path: str, method: str = "GET") -> tuple[int, str]:
    request = f"{method} {path} HTTP/1.1\r\nHost: probe\r\nUser-Agent: kube-probe/1.33\r\n\r\n"
    status, headers, body = await exchange(address, request.encode())
    assert headers["content-length"] == str(len(body)) or method == "HEAD"
    assert headers["connection"] == "close"
    return status, body.decode()


@pytest.mark.anyio
async def test_live_and_ready_with_the_embedded_registry(
    registry: str,
    socket_dir: str,  # noqa: F811
) -> None:
    socket = os.path.join(socket_dir, "jesus.sock")
    async with run_daemon(socket, registry=registry, health="127.0.0.1:0") as daemon:
        assert daemon.health is not None and daemon.health.startswith("127.0.0.1:")
        assert await get(daemon.health, LIVE_PATH) == (200, "live\n")
        assert await get(daemon.health, READY_PATH) == (200, "ready\n")
        assert await get(daemon.health, READY_PATH + "?verbose") == (200, "ready\n")
        assert await get(daemon.health, READY_PATH, "HEAD") == (200, "")
        status, text = await get(daemon.health, "/metrics")
        assert status == 404 and LIVE_PATH in text and READY_PATH in text
        status, headers, _ = await exchange(daemon.health, b"POST /livez HTTP/1.1\r\n\r\n")
        assert status == 405 and headers["allow"] == "GET, HEAD"
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", int(daemon.health.rpartition(":")[2]))


@pytest.mark.anyio
async def test_ready_only_while_memcached_answers(socket_dir: str) -> None:  # noqa: F811
    memcached = Memcached()  # a free port, where nothing listens yet
    port = memcached.port
    socket = os.path.join(socket_dir, "jesus.sock")
    url = f"memcache://127.0.0.1:{port}?prefix=health"
    try:
        async with run_daemon(socket, registry=url, health="127.0.0.1:0") as daemon:
            assert daemon.health is not None
            status, reason = await get(daemon.health, READY_PATH)
            assert status == 503
            assert reason.startswith("registry unreachable: ") and reason.count("\n") == 1
            assert f"127.0.0.1:{port}" in reason
            assert await get(daemon.health, LIVE_PATH) == (200, "live\n")  # alive all along

            await anyio.to_thread.run_sync(memcached.start)
            assert memcached.port == port, "the port was taken meanwhile"
            await _until(daemon.health, 200)

            await anyio.to_thread.run_sync(memcached.stop)
            await _until(daemon.health, 503)
            assert await get(daemon.health, LIVE_PATH) == (200, "live\n")
    finally:
        memcached.stop()


async def _until(address: str, status: int) -> None:
    """Probe as a kubelet does (a few times a second here) until /readyz answers `status`."""
    with anyio.fail_after(10):
        while (await get(address, READY_PATH))[0] != status:
            await anyio.sleep(0.2)


@pytest.mark.anyio
async def test_bad_requests_get_400_and_the_server_stays_up(
    registry: str,
    socket_dir: str,  # noqa: F811
) -> None:
    socket = os.path.join(socket_dir, "jesus.sock")
    async with run_daemon(socket, registry=registry, health="127.0.0.1:0") as daemon:
        address = daemon.health
        assert address is not None
        bad = [
            b"garbage\r\n\r\n",
            b"GET /livez\r\n\r\n",
            b"GET /livez HTTP/2.0\r\n\r\n",
            b"GET /livez HTTP/1.1 extra\r\n\r\n",
            b"get /livez HTTP/1.1\r\n\r\n",
            b"GET livez HTTP/1.1\r\n\r\n",
            "GET /l\u00efvez HTTP/1.1\r\n\r\n".encode(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200) + b"\r\n\r\n",  # TLS
            b"GET /livez HTTP/1.1\r\nX-Filler: " + b"x" * MAX_HEAD,  # a head with no end
        ]
        for request in bad:
            status, _, body = await exchange(address, request)
            assert status == 400, request
            assert body.endswith(b"\n") and body.count(b"\n") == 1
        # Some go away mid-request, or say nothing at all.
        host, _, port = address.rpartition(":")
        for request in (b"", b"GET /readyz HTTP/1.1\r\nHost: x\r\n"):
            async with await anyio.connect_tcp(host, int(port)) as stream:
                if request:
                    await stream.send(request)
        assert await get(address, LIVE_PATH) == (200, "live\n")
        assert await get(address, READY_PATH) == (200, "ready\n")


class CountingBackend:
    """The embedded registry, counting the look-ups made of it."""

    def __init__(self, registry: str) -> None:
        self.inner = open_registry(registry, default_catalog())
        self.url = registry
        self.lookups = 0

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        self.lookups += 1
        await anyio.sleep(0.05)  # a round trip, during which more probes arrive
        return await self.inner.list_instances(service)

    async def register(self, record: InstanceRecord, ttl: float) -> None:
        await self.inner.register(record, ttl)

    async def deregister(self, service: str, instance_id: str) -> None:
        await self.inner.deregister(service, instance_id)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.anyio
async def test_probes_share_one_lookup_a_second(registry: str) -> None:
    backend = CountingBackend(registry)
    readiness = Readiness(backend, cache=0.5)
    answers: list[Any] = []

    async def probe() -> None:
        answers.append(await readiness.reason())

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(probe)
    assert answers == [None] * 20
    assert backend.lookups == 1
    assert await readiness.reason() is None and backend.lookups == 1  # cached
    await anyio.sleep(0.6)
    assert await readiness.reason() is None and backend.lookups == 2  # asked again


@pytest.mark.anyio
async def test_a_bad_health_address_is_a_configuration_error(
    registry: str,
    socket_dir: str,  # noqa: F811
) -> None:
    socket = os.path.join(socket_dir, "jesus.sock")
    for address in ("nonsense", "127.0.0.1:", ":8080", "127.0.0.1:70000"):
        with pytest.raises(ConfigurationError, match="must be HOST:PORT"):
            async with run_daemon(socket, registry=registry, health=address):
                pass
        assert not await anyio.Path(socket).exists()
    async with run_daemon(socket, registry=registry, health="127.0.0.1:0") as daemon:
        assert daemon.health is not None
        with pytest.raises(ConfigurationError, match="cannot listen for health probes"):
            async with run_daemon(
                os.path.join(socket_dir, "other.sock"), registry=registry, health=daemon.health
            ):
                pass


@pytest.mark.anyio
async def test_the_daemon_command_serves_health_from_the_environment(
    registry: str,
    socket_dir: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JESUS_DAEMON_HEALTH", "127.0.0.1:0")
    socket = os.path.join(socket_dir, "jesus.sock")
    daemon = _start(registry, "daemon", "--socket", socket)
    try:
        assert daemon.stdout is not None
        assert daemon.stdout.readline().startswith("jesus daemon listening")
        line = daemon.stdout.readline().strip()
        prefix, suffix = "health probes on http://", f"{LIVE_PATH} and {READY_PATH}"
        assert line.startswith(prefix) and line.endswith(suffix), line
        address = line.removeprefix(prefix).removesuffix(suffix).rstrip("/")
        assert await get(address, READY_PATH) == (200, "ready\n")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        _stop(daemon)


def test_a_bad_health_option_is_one_clear_line(registry: str, socket_dir: str) -> None:  # noqa: F811
    daemon = _start(
        registry, "daemon", "--socket", os.path.join(socket_dir, "j.sock"), "--health", "80"
    )
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert err.strip() == "jesus: health address '80' must be HOST:PORT", err
