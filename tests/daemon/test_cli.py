"""`jesus daemon` as an operator runs it: a process of its own, a service in another, and a
local process that calls through the socket."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from jesus.messages import ResponseMode
from tests.daemon.local import LocalProcess
from tests.daemon.test_relay import socket_dir  # noqa: F401  (the fixture)
from tests.integration.test_cli import JESUS, ROOT


@pytest.fixture
def service(registry: str) -> Iterator[subprocess.Popen[str]]:
    proc = _start(registry, "serve", "tests.helpers.served:calc")
    yield proc
    _stop(proc)


def _start(registry: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry}
    return subprocess.Popen(
        [*JESUS, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# The daemon and the service run in processes of their own, on their own loop: the test's
# side (a raw local process, a client that checks) needs one backend only.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_the_daemon_command_relays_and_stops_on_sigterm(
    registry: str,
    socket_dir: str,  # noqa: F811
    service: Any,
    anyio_backend: str,
) -> None:
    socket = os.path.join(socket_dir, "jesus.sock")
    daemon = _start(registry, "daemon", "--socket", socket)  # while the service starts
    try:
        assert service.stdout.readline().startswith("serving calc")
        line = daemon.stdout.readline() if daemon.stdout else ""
        assert line.strip() == f"jesus daemon listening on unix://{socket}", line + (
            daemon.stderr.read() if daemon.stderr else ""
        )
        async with LocalProcess(socket) as local:
            assert await local.call("calc.add", {"a": 2, "b": 3}, ResponseMode.RESPONSE) == 5
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        assert not await anyio.Path(socket).exists()
    finally:
        _stop(daemon)


def test_a_socket_it_may_not_create_is_one_clear_line(registry: str) -> None:
    daemon = _start(registry, "daemon", "--socket", "/proc/jesus/jesus.sock")
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert err.strip().startswith("jesus: ") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # as above: processes of their own
@pytest.mark.anyio
async def test_jesus_serve_offers_through_the_daemon(
    registry: str,
    socket_dir: str,  # noqa: F811
    anyio_backend: str,
) -> None:
    import jesus

    socket = os.path.join(socket_dir, "jesus.sock")
    daemon = _start(registry, "daemon", "--socket", socket)
    served = None
    try:
        assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
        served = _start(registry, "serve", "tests.helpers.served:calc", "--daemon", socket)
        assert served.stdout is not None
        line = served.stdout.readline()
        assert line.startswith("serving calc") and "through the daemon" in line, line
        async with jesus.Client(registry) as client:
            assert await client.call("calc.add", {"a": 20, "b": 22}) == 42
            served.send_signal(signal.SIGTERM)
            assert served.wait(timeout=15) == 0
            backend = client.resolver.backend
            with anyio.fail_after(5):  # gone with its connection to the daemon
                while await backend.list_instances("calc"):
                    await anyio.sleep(0.05)
    finally:
        if served is not None:
            _stop(served)
        _stop(daemon)
