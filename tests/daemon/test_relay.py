"""A local process with no jesus Client calls services and emits events through the daemon:
every mode, its meta carried on, the daemon's own checks, and bad requests answered."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import jesus
from jesus.messages import ResponseMode
from jesus.protocol import wire_events as ev
from jesus_daemon import run_daemon
from tests.daemon.local import LocalProcess
from tests.helpers import wait_until
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio
CURL = shutil.which("curl") or "curl"

RESPONSE, ACK, NO_RESPONSE, STREAM = (
    ResponseMode.RESPONSE,
    ResponseMode.ACK,
    ResponseMode.NO_RESPONSE,
    ResponseMode.STREAM,
)


@pytest.fixture
def socket_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="jd-", dir="/tmp")  # a unix socket path has 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def through_daemon(registry: str, socket_dir: str) -> Any:
    """`async with through_daemon(*services) as (local, state_of_node)`: the services served
    as usual, the daemon on the same registry, and a local process connected to it."""

    @asynccontextmanager
    async def run(*services: jesus.Service) -> AsyncIterator[LocalProcess]:
        socket = os.path.join(socket_dir, "jesus.sock")
        async with (
            jesus.serve(*services, registry=registry),
            run_daemon(socket, registry=registry),
            LocalProcess(socket) as local,
        ):
            yield local

    return run


def code(answer: Any) -> str:
    assert isinstance(answer, ev.ErrorReceived), f"expected an error, got {answer!r}"
    return answer.error.code


async def test_a_response_call_carries_its_corrid_on(through_daemon: Any) -> None:
    svc, state = calculator()
    async with through_daemon(svc) as local:
        sid, corrid = await local.send("calc.add", {"a": 20, "b": 22}, RESPONSE)
        assert await local.answer(sid) == 42
        assert state["corrids"] == [corrid]


async def test_ack_and_no_response_calls(through_daemon: Any) -> None:
    svc, state = calculator()
    async with through_daemon(svc) as local:
        assert await local.call("calc.record", {"n": 1}, ACK) is None
        assert state["acked"] == [{"n": 1}]  # the daemon acked once the service had
        await local.send("calc.fire", {"n": 2}, NO_RESPONSE)
        await wait_until(lambda: state["notified"] == [{"n": 2}])


async def test_an_ack_means_the_service_accepted_it(through_daemon: Any) -> None:
    """No ACK from the daemon for a call nobody took: the caller hears why instead."""
    svc, _ = calculator()
    async with through_daemon(svc) as local:
        answer = await local.call("nosuch.record", {"n": 1}, ACK)
        assert code(answer) == "UNAVAILABLE"
        assert "nosuch" in answer.error.message


async def test_a_stream_flows_under_credit(through_daemon: Any) -> None:
    svc, _ = calculator()
    async with through_daemon(svc) as local:
        # 500 items: past the window this process announced (32), so only its credit
        # lets the stream finish.
        assert await local.stream_items("calc.count", {"n": 500}) == list(range(500))
        failed = await local.stream_items("calc.count", {"n": 3, "fail": True})
        assert code(failed) == "REMOTE_FAILURE"


async def test_the_daemon_checks_requests_against_the_schema(through_daemon: Any) -> None:
    """A process with no JSON Schema library is still checked, before the call leaves."""
    svc, state = calculator()
    async with through_daemon(svc) as local:
        answer = await local.call("calc.add", {"a": "x", "b": 1}, RESPONSE)
        assert code(answer) == "INVALID_REQUEST"
        assert any("/a" in str(d) for d in answer.error.details)
        assert state["corrids"] == []  # it never reached the service
        answer = await local.call("calc.wrong", None, RESPONSE)
        assert code(answer) == "INVALID_RESPONSE"


async def test_bad_requests_get_errors_and_the_connection_stays(through_daemon: Any) -> None:
    svc, _ = calculator()
    async with through_daemon(svc) as local:
        assert code(await local.call("calc.nosuch", None, RESPONSE)) == "UNKNOWN_METHOD"
        assert code(await local.call("nodot", None, RESPONSE)) == "UNKNOWN_METHOD"
        assert code(await local.call("nosuch.add", None, RESPONSE)) == "UNAVAILABLE"
        assert code(await local.call("~not an event", None, ACK)) == "INVALID_REQUEST"
        assert code(await local.call("~user.created", None, RESPONSE)) == "INVALID_REQUEST"
        assert code(await local.call("calc.add", None, RESPONSE, d="soon")) == "INVALID_REQUEST"
        assert code(await local.call("calc.count", {"n": 1}, RESPONSE)) == "INVALID_REQUEST"
        assert await local.call("calc.add", {"a": 1, "b": 2}, RESPONSE) == 3


async def test_the_callers_deadline_travels_on(through_daemon: Any) -> None:
    svc, state = calculator()
    async with through_daemon(svc) as local:
        began = anyio.current_time()
        answer = await local.call("calc.sleep", 30, RESPONSE, d=300)
        assert code(answer) == "DEADLINE_EXCEEDED"
        assert anyio.current_time() - began < 5
        await wait_until(lambda: state["cancelled"] == 1)  # the service stopped too


async def test_events_reach_their_listeners(through_daemon: Any) -> None:
    seen: list[Any] = []
    svc = jesus.Service("audit", channel="tcp+msgpack")

    @svc.listener("user.*", schema={"type": "object", "required": ["id"]})
    async def on_user(data: dict[str, Any]) -> None:
        meta = jesus.current_call()
        seen.append((meta.event if meta else None, data["id"]))

    async with through_daemon(svc) as local:
        assert await local.call("~user.created", {"id": 1}, ACK) is None
        assert seen == [("user.created", 1)]
        await local.send("~user.deleted", {"id": 2}, NO_RESPONSE)
        await wait_until(lambda: len(seen) == 2)
        assert seen[1] == ("user.deleted", 2)
        # An event nobody listens to has nobody to deliver to: acked, as Client.emit does.
        assert await local.call("~order.created", {"id": 3}, ACK) is None
        # One whose listener refuses it is not.
        assert code(await local.call("~user.created", {"no": "id"}, ACK)) == "UNAVAILABLE"
        assert len(seen) == 2


async def test_the_socket_is_the_daemons_users_alone(registry: str, socket_dir: str) -> None:
    socket = os.path.join(socket_dir, "run", "jesus.sock")  # its directory is made
    async with run_daemon(socket, registry=registry) as daemon:
        assert stat.S_IMODE(os.stat(socket).st_mode) == 0o600
        assert daemon.endpoint == f"unix://{socket}"
    assert not await anyio.Path(socket).exists()  # removed at the end


async def test_a_directory_anybody_may_write_to_is_refused(registry: str, socket_dir: str) -> None:
    open_dir = os.path.join(socket_dir, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    with pytest.raises(jesus.ConfigurationError, match="writable by every user"):
        async with run_daemon(os.path.join(open_dir, "jesus.sock"), registry=registry):
            pass


async def test_curl_calls_through_the_socket_with_no_sdk(through_daemon: Any) -> None:
    """The same socket speaks the HTTP mapping: each connection is told by its first byte."""
    svc, state = calculator()
    async with through_daemon(svc) as local:
        socket = local.socket
        result = await anyio.run_process(
            [
                CURL,
                "-s",
                "-S",
                "--unix-socket",
                socket,
                "-H",
                "content-type: application/json",
                "-H",
                "x-jesus-corrid: from-curl",
                "-d",
                '{"a": 40, "b": 2}',
                "http://daemon/calc/add",
            ],
        )
        assert json.loads(result.stdout) == 42
        assert state["corrids"][-1] == "from-curl"
        bad = await anyio.run_process(
            [
                CURL,
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--unix-socket",
                socket,
                "-H",
                "content-type: application/json",
                "-d",
                '{"a": "x"}',
                "http://daemon/calc/add",
            ],
        )
        assert bad.stdout == b"400"  # the daemon checked it against calc.add's schema
        # The framed connection beside it is still served.
        assert await local.call("calc.add", {"a": 1, "b": 2}, RESPONSE) == 3


async def test_a_connection_that_says_nothing_is_closed_and_the_socket_serves_on(
    registry: str, socket_dir: str
) -> None:
    """The socket waits for a connection's first byte to tell its protocol: one that sends
    none is closed after the handshake timeout, as a silent peer is anywhere."""
    socket = os.path.join(socket_dir, "jesus.sock")
    svc, _ = calculator()
    limits = jesus.Limits(handshake_timeout=0.3)
    async with (
        jesus.serve(svc, registry=registry),
        run_daemon(socket, registry=registry, limits=limits),
    ):
        async with await anyio.connect_unix(socket) as silent:
            with anyio.fail_after(5), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await silent.receive()
        async with LocalProcess(socket) as local:  # the socket still serves
            assert await local.call("calc.add", {"a": 1, "b": 2}, RESPONSE) == 3
