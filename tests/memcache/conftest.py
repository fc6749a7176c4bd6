"""Real memcached servers: the one .ci/run started ($JESUS_TEST_MEMCACHED), or ones these
fixtures start from the installed `memcached` binary. Never a mock."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw_client(url: str) -> Client:
    """A plain client of the (first) node of a registry URL, to look at or spoil its keys."""
    host, _, port = url.removeprefix("memcache://").partition("?")[0].split(",")[0].rpartition(":")
    return Client((host, int(port)), default_noreply=False)


class Memcached:
    """A memcached process on loopback that a test may stop and start again."""

    def __init__(self, port: int | None = None, options: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.options = options  # more memcached flags: "-c", "40"; "-I", "256k"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, stores: bool = True) -> None:
        """Start it; `stores=False` for a test that stores nothing in it (then its clock
        need not have ticked)."""
        for _ in range(5):
            if self._start(stores):
                return
            self.port = free_port()  # the port was taken meanwhile: another one
        raise RuntimeError("memcached did not start")

    def _start(self, stores: bool) -> bool:
        binary = shutil.which("memcached")
        assert binary, "memcached is not installed (apt-get install memcached; .ci/run does)"
        self.proc = subprocess.Popen(
            [
                binary,
                *("-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64", "-u", "root"),
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False  # it exited: the port is someone else's
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            # memcached's clock ticks once a second from start; an item set before the first
            # tick with a short expiry can vanish at once, so let it tick first.
            if stores:
                time.sleep(1.1)
            return self.proc.poll() is None
        raise RuntimeError("memcached did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="session")
def memcached_address() -> Iterator[str]:
    shared = os.environ.get("JESUS_TEST_MEMCACHED")
    if shared:
        yield shared
        return
    server = Memcached()
    server.start()
    yield server.address
    server.stop()


@pytest.fixture
def memcache_url(memcached_address: str) -> str:
    """A registry URL with a prefix of its own, so tests never see each other's records."""
    return f"memcache://{memcached_address}?prefix=t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def own_memcached() -> Iterator[Memcached]:
    server = Memcached()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def second_memcached() -> Iterator[Memcached]:
    """A second node, for registries spread over a cluster."""
    server = Memcached()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """asyncio and trio. The registry reaches memcached through its own client in worker
    threads, not through the event loop: on uvloop these tests would run what asyncio runs,
    and they are among the slowest of the suite (a real memcached, its TTLs in seconds)."""
    return request.param
