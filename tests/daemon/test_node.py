"""The daemon is language agnostic: a Node.js process (clients/node, written from PROTOCOL.md
with Node's standard library alone) offers services through it, called by Python in every
mode and checked by the daemon, calls Python services and listens to Python's events through
it, and gets clear refusals for bad declarations and frames while the daemon stays up."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
from jesus.messages import ResponseMode
from jesus_daemon import run_daemon
from tests.daemon.node_script import CLIENT, node_binary, node_script
from tests.helpers import wait_until
from tests.helpers.services import calculator


@pytest.fixture
def socket() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="jd-", dir="/tmp")  # a unix socket path has 108 bytes
    yield os.path.join(path, "jesus.sock")
    shutil.rmtree(path, ignore_errors=True)


def test_the_node_library_passes_its_own_tests() -> None:
    """Frames against PROTOCOL.md's golden vectors, and both roles against a scripted peer."""
    tests = sorted(str(p) for p in (CLIENT / "test").glob("*.test.mjs"))
    assert tests
    done = subprocess.run(
        [node_binary(), "--test", *tests], capture_output=True, text=True, timeout=60, cwd=CLIENT
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "# fail 0" in done.stdout


@pytest.mark.anyio
async def test_a_node_service_is_called_in_every_mode(
    registry: str, socket: str, tmp_path: Path
) -> None:
    async with (
        run_daemon(socket, registry=registry),
        node_script("provider", socket, log_dir=tmp_path) as node,
        jesus.Client(registry) as client,
    ):
        assert await node.next() == {"ready": True}
        assert await client.call("nodecalc.add", {"a": 2, "b": 3}) == 5
        seen = await node.next()
        assert seen["seen"] == "add" and seen["data"] == {"a": 2, "b": 3}
        assert seen["corrid"]  # the caller's meta arrived
        assert 0 < seen["deadline"] <= 30_000  # and what is left of its deadline
        await client.call("nodecalc.record", 7, mode="ack")
        assert await node.next() == {"seen": "record", "data": 7}
        await client.notify("nodecalc.forget", 8)
        assert await node.next() == {"seen": "forget", "data": 8}
        # Past every window on the way (512 items), so only credit lets it finish.
        assert [i async for i in client.stream("nodecalc.count", 2000)] == list(range(2000))
        assert await node.next() == {"seen": "count", "produced": 2000, "finished": True}
        await client.emit("order.created", {"id": 11}, mode="ack")
        assert await node.next() == {"event": "order.created", "id": 11}

        records = await client.resolver.backend.list_instances("nodecalc")
        methods = records[0].methods
        assert methods["count"].mode is ResponseMode.STREAM
        assert [str(c) for c in methods["count"].channels] == ["unix+msgpack+none"]
        assert [str(c) for c in methods["record"].channels] == ["http+json+none"]


@pytest.mark.anyio
async def test_the_daemon_checks_what_goes_to_and_comes_from_node(
    registry: str, socket: str, tmp_path: Path
) -> None:
    async with (
        run_daemon(socket, registry=registry),
        node_script("provider", socket, log_dir=tmp_path) as node,
        jesus.Client(registry, validate=False) as client,  # nothing checked on this side
    ):
        await node.until("ready")
        with pytest.raises(jesus.InvalidRequest) as refused:
            await client.call("nodecalc.add", {"a": "two", "b": 3})
        assert any("/a" in str(d) for d in refused.value.details)
        assert await client.call("nodecalc.add", {"a": 1, "b": 1}) == 2
        # The next call Node saw is the good one: the bad one never reached it.
        assert (await node.next())["data"] == {"a": 1, "b": 1}
        with pytest.raises(jesus.InvalidResponse):
            await client.call("nodecalc.broken", None)
        with pytest.raises(jesus.RemoteFailure, match="RangeError: kaput") as failed:
            await client.call("nodecalc.boom", None)
        assert failed.value.corrid
        with pytest.raises(jesus.InvalidRequest, match="not this one") as own:
            await client.call("nodecalc.refuse", None)  # a code of its own, passed on
        assert own.value.details == ["/: no"]
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("nodecalc.sleep", 5000, timeout=0.3)
        stopped = await node.next()  # Node's handler was told to stop: by its own clock,
        assert stopped["seen"] == "sleep"  # or by the daemon's cancel, whichever came first
        assert stopped["stopped"] in ("DEADLINE_EXCEEDED", "CANCELLED")


@pytest.mark.anyio
async def test_a_node_stream_waits_for_credit(registry: str, socket: str, tmp_path: Path) -> None:
    async with (
        run_daemon(socket, registry=registry),
        node_script("provider", socket, log_dir=tmp_path) as node,
        jesus.Client(registry) as client,
    ):
        await node.until("ready")
        async with aclosing(client.stream("nodecalc.count", 1_000_000)) as items:
            async for _ in items:
                await anyio.sleep(0.5)  # a slow consumer: Node could send them all by now
                break
        seen = await node.next()  # the cancel reached Node's generator
        assert seen["seen"] == "count" and not seen["finished"]
        # The windows on the way (the daemon's and the client's, 512 items each), no more.
        assert seen["produced"] <= 2 * 512 + 64


@pytest.mark.anyio
async def test_a_node_service_goes_with_its_process_and_comes_back_with_the_daemon(
    registry: str, socket: str, tmp_path: Path
) -> None:
    async with (
        jesus.Client(registry) as client,
        run_daemon(socket, registry=registry) as first,
        node_script("provider", socket, log_dir=tmp_path) as node,
    ):
        await node.until("ready")
        assert await client.call("nodecalc.add", {"a": 1, "b": 2}) == 3
        await first.server.aclose()  # the daemon goes, and the services with it
        assert await node.until("disconnected") == {"disconnected": "UNAVAILABLE"}
        async with run_daemon(socket, registry=registry):
            assert await node.until("reconnected") == {"reconnected": True}
            with anyio.fail_after(10):  # the client still has the old record for a moment
                while True:
                    try:
                        assert await client.call("nodecalc.add", {"a": 2, "b": 2}) == 4
                        break
                    except jesus.Unavailable:
                        await anyio.sleep(0.05)
            node.terminate()  # it leaves cleanly: GOAWAY, then the connection closes
            assert await node.until("closed") == {"closed": True}
            assert await node.exit_code() == 0
            backend = client.resolver.backend
            with anyio.fail_after(2):  # at once, long before a record's ttl
                while await backend.list_instances("nodecalc"):
                    await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_node_calls_python_services_and_hears_their_events(
    registry: str, socket: str, tmp_path: Path
) -> None:
    calc, state = calculator()
    audited: list[Any] = []
    audit = jesus.Service("audit", channel="tcp+msgpack")

    @audit.listener("audit.*", schema={"type": "object", "required": ["id"]})
    async def on_audit(data: dict[str, Any]) -> None:
        meta = jesus.current_call()
        audited.append((meta.event if meta else None, data))

    async with (
        jesus.serve(calc, audit, registry=registry),
        run_daemon(socket, registry=registry),
        jesus.Client(registry) as client,
        node_script("caller", socket, log_dir=tmp_path) as node,
    ):
        steps: dict[str, Any] = {}
        while "done" not in (report := await node.next()):
            steps[report["step"]] = report

        assert steps["add"]["value"] == 42
        assert state["corrids"] == ["node-corrid-1"]  # its corrid went all the way
        assert steps["record"]["value"] is None
        assert state["acked"] == [{"n": 1}]  # acked once the service had it
        assert steps["fire"]["value"] is None
        await wait_until(lambda: state["notified"] == [{"n": 2}])
        assert steps["count"]["value"] == list(range(1500))  # past the window of 512
        failed = steps["count-fails"]["value"]
        assert failed["items"] == [0, 1, 2] and failed["code"] == "REMOTE_FAILURE"
        assert failed["corrid"]
        assert steps["count-left"]["value"] == [0, 1, 2, 3, 4]
        # Its cancel stopped the service; the failed stream and the deadline count too.
        await wait_until(lambda: state["cancelled"] == 3)
        assert state["produced"] < 1000

        def error(step: str) -> dict[str, Any]:
            err: dict[str, Any] = steps[step]["error"]
            assert err["corrid"], step  # every error names its call
            return err

        assert error("boom")["code"] == "REMOTE_FAILURE"
        assert "kaput" in error("boom")["message"]
        assert error("invalid")["code"] == "INVALID_REQUEST"
        assert any("/a" in d for d in error("invalid")["details"])
        assert error("nosuch")["code"] == "UNAVAILABLE"
        assert error("deadline")["code"] == "DEADLINE_EXCEEDED"
        assert steps["emit"]["value"] is None
        assert audited == [("audit.logged", {"id": 7})]  # acked: delivered already
        assert steps["emit-bad-mode"]["error"]["code"] == "INVALID_REQUEST"

        await client.emit("user.created", {"id": 5}, mode="ack")
        assert await node.next() == {"event": "user.created", "data": {"id": 5}}
        assert await node.exit_code() == 0


@pytest.mark.anyio
async def test_bad_declarations_and_frames_from_node_are_refused(
    registry: str, socket: str, tmp_path: Path
) -> None:
    calc, _ = calculator()
    async with (
        jesus.serve(calc, registry=registry),
        run_daemon(socket, registry=registry),
        jesus.Client(registry) as client,
        node_script("bad", socket, log_dir=tmp_path) as node,
    ):
        cases = {report.pop("case"): report for report in await node.rest()}

        def refusal(case: str, code: str, says: str) -> None:
            error = cases[case]["error"]
            assert error is not None, f"{case} was not refused"
            assert error["code"] == code, case
            assert says in error["message"], case

        refusal("bad-mode", "INVALID_REQUEST", "methods/m/mode")
        refusal("bad-key", "INVALID_REQUEST", "colour")
        refusal("not-an-object", "INVALID_REQUEST", "(top)")
        refusal("bad-schema", "INVALID_REQUEST", "schema")
        refusal("bad-hello", "PROTOCOL_ERROR", "jesus")
        refusal("not-json-hello", "PROTOCOL_ERROR", "JSON")
        refusal("no-hello-first", "PROTOCOL_ERROR", "HELLO")
        refusal("unknown-type", "PROTOCOL_ERROR", "0x7f")
        refusal("short-ping", "PROTOCOL_ERROR", "PING")
        refusal("response-from-client", "PROTOCOL_ERROR", "RESPONSE")
        refusal("request-on-stream-0", "PROTOCOL_ERROR", "stream 0")
        refusal("huge-length", "TOO_LARGE", "4294967295")
        # A provider that breaks the protocol once accepted is dropped, its service with it.
        assert "provider-accepted" in cases
        assert cases["provider-breaks"]["types"] == [1]  # the daemon's HELLO, then closed
        assert await client.resolver.backend.list_instances("nodebroken") == []
        assert await client.resolver.backend.list_instances("nodebad") == []
        # Through it all the daemon stayed up: the script's last call went through.
        assert cases["still-up"] == {"value": 3}
