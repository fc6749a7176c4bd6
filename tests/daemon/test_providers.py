"""Processes offer services through the daemon: registered while connected, called by an
ordinary Python client in every mode over each method's own channel, checked by the daemon,
deregistered as soon as the process goes, and offered again after the daemon restarts."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

import jesus
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.plugins import default_catalog
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import ProtocolConnection, Role
from jesus_daemon import provide, run_daemon
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio

NUMBER = {"type": "integer"}
PAIR = {
    "type": "object",
    "properties": {"a": NUMBER, "b": NUMBER},
    "required": ["a", "b"],
    "additionalProperties": False,
}


@pytest.fixture
def socket() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="jd-", dir="/tmp")  # a unix socket path has 108 bytes
    yield os.path.join(path, "jesus.sock")
    shutil.rmtree(path, ignore_errors=True)


def calc(seen: list[Any], version: str = "1.0.0") -> jesus.Service:
    svc = jesus.Service("pcalc", version=version, channel="tcp+msgpack")

    @svc.method(request=PAIR, response=NUMBER)
    async def add(data: dict[str, int]) -> int:
        meta = jesus.current_call()
        seen.append(("add", meta.corrid if meta else None))
        return data["a"] + data["b"]

    @svc.method(request=PAIR, response=NUMBER)
    async def broken(data: dict[str, int]) -> Any:
        return "not a number"  # the process's answer is checked on the way back

    @svc.method(mode="ack", request=NUMBER, channel="http+json")
    async def record(n: int) -> None:
        seen.append(("record", n))

    @svc.method(mode="noResponse", request=NUMBER)
    async def forget(n: int) -> None:
        seen.append(("forget", n))

    @svc.method(mode="stream", request=NUMBER, response=NUMBER, channel="unix+msgpack")
    async def count(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @svc.listener("order.*", schema={"type": "object", "required": ["id"]})
    async def on_order(data: dict[str, Any]) -> None:
        meta = jesus.current_call()
        seen.append((meta.event if meta else None, data["id"]))

    return svc


async def test_a_provided_service_is_called_in_every_mode(registry: str, socket: str) -> None:
    seen: list[Any] = []
    async with (
        run_daemon(socket, registry=registry),
        provide(calc(seen), socket=socket),
        jesus.Client(registry) as client,
    ):
        assert await client.call("pcalc.add", {"a": 2, "b": 3}) == 5
        assert seen[-1][0] == "add" and seen[-1][1]  # the caller's corrid arrived
        await client.call("pcalc.record", 7, mode="ack")
        assert ("record", 7) in seen  # an ack means the process took it
        await client.notify("pcalc.forget", 8)
        await wait_until(lambda: ("forget", 8) in seen)
        assert [i async for i in client.stream("pcalc.count", 5)] == [0, 1, 2, 3, 4]
        await client.emit("order.created", {"id": 11}, mode="ack")
        assert ("order.created", 11) in seen


async def test_the_daemon_checks_what_goes_to_and_comes_from_the_process(
    registry: str, socket: str
) -> None:
    seen: list[Any] = []
    async with (
        run_daemon(socket, registry=registry),
        provide(calc(seen), socket=socket),
        jesus.Client(registry, validate=False) as client,  # nothing checked on this side
    ):
        with pytest.raises(jesus.InvalidRequest):
            await client.call("pcalc.add", {"a": "two", "b": 3})
        with pytest.raises(jesus.InvalidResponse):
            await client.call("pcalc.broken", {"a": 1, "b": 1})
        assert not [s for s in seen if s[0] == "add"]
        assert await client.call("pcalc.add", {"a": 1, "b": 1}) == 2  # still served


async def test_services_are_deregistered_when_the_process_goes(registry: str, socket: str) -> None:
    async with run_daemon(socket, registry=registry), jesus.Client(registry) as client:
        backend = client.resolver.backend
        async with provide(calc([]), socket=socket):
            assert len(await backend.list_instances("pcalc")) == 1
        # At once: long before a heartbeat's ttl (10 s) could have let the record lapse.
        with anyio.fail_after(2):
            while await backend.list_instances("pcalc"):
                await anyio.sleep(0.01)
        with pytest.raises(jesus.Unavailable):
            await client.call("pcalc.add", {"a": 1, "b": 1})


async def test_a_process_offers_its_services_again_after_the_daemon_restarts(
    registry: str, socket: str
) -> None:
    async with (
        jesus.Client(registry) as client,
        run_daemon(socket, registry=registry) as first,
        provide(calc([]), socket=socket),
    ):
        assert await client.call("pcalc.add", {"a": 1, "b": 2}) == 3
        await first.server.aclose()  # the daemon goes, and the services with it
        async with run_daemon(socket, registry=registry):
            with anyio.fail_after(10):
                while True:
                    try:
                        assert await client.call("pcalc.add", {"a": 2, "b": 2}) == 4
                        break
                    except jesus.Unavailable:
                        await anyio.sleep(0.05)


async def test_an_incompatible_new_version_is_refused(registry: str, socket: str) -> None:
    newer = jesus.Service("pcalc", version="2.0.0", channel="tcp+msgpack")

    @newer.method(request={"type": "object", "required": ["a", "b", "c"]}, response=NUMBER)
    async def add(data: dict[str, int]) -> int:
        return 0

    async with run_daemon(socket, registry=registry), provide(calc([]), socket=socket):
        with pytest.raises(jesus.InvalidRequest, match="cannot serve pcalc"):
            async with provide(newer, socket=socket):
                pass


async def test_no_daemon_is_one_clear_error(socket: str) -> None:
    with pytest.raises(jesus.Unavailable, match="no daemon listens"):
        async with provide(calc([]), socket=socket):
            pass


@pytest.mark.parametrize(
    ("offer", "fault"),
    [
        ({"version": "1"}, "'name' is a required property"),
        ({"name": "x", "methods": {"m": {"mode": "sometimes"}}}, "methods/m/mode"),
        ({"name": "x", "methods": {"m": {"request": {"type": "nope"}}}}, "schema"),
        ({"name": "bad.name"}, "service name"),
        ("just a string", "(top)"),
    ],
)
async def test_a_bad_declaration_is_refused_and_the_daemon_stays(
    registry: str, socket: str, offer: Any, fault: str
) -> None:
    async with run_daemon(socket, registry=registry):
        error = await raw_offer(socket, offer)
        assert error.code == "INVALID_REQUEST"
        assert fault in error.message
        async with provide(calc([]), socket=socket), jesus.Client(registry) as client:
            assert await client.call("pcalc.add", {"a": 1, "b": 1}) == 2


async def raw_offer(socket: str, offer: Any) -> Any:
    """A process offering `offer` by hand, as another language would: its HELLO first."""
    catalog = default_catalog()
    proto = ProtocolConnection(
        Role.SERVER,
        Limits(),
        codec=catalog.codecs["msgpack"],
        compression=catalog.compressions["none"],
        codecs=dict(catalog.codecs),
        compressions=dict(catalog.compressions),
    )
    async with await anyio.connect_unix(socket) as stream:
        await stream.send(proto.send_hello({"provide": offer}))
        with anyio.fail_after(10):
            while True:
                for event in proto.receive_data(await stream.receive()):
                    if isinstance(event, ev.ErrorReceived):
                        return event.error
                    raise AssertionError(f"expected a refusal, got {event!r}")


async def test_modes_are_those_declared(registry: str, socket: str) -> None:
    async with (
        run_daemon(socket, registry=registry),
        provide(calc([]), socket=socket),
        jesus.Client(registry) as client,
    ):
        described = await client.resolver.backend.list_instances("pcalc")
        methods = described[0].methods
        assert methods["count"].mode is ResponseMode.STREAM
        assert methods["record"].mode is ResponseMode.ACK


async def test_served_on_every_interface_and_advertised_at_the_nodes_address(
    registry: str, socket: str
) -> None:
    async with (
        run_daemon(socket, registry=registry, host="0.0.0.0", advertise="127.0.0.1"),
        provide(calc([]), socket=socket),
        jesus.Client(registry) as client,
    ):
        (record,) = await client.resolver.backend.list_instances("pcalc")
        assert record.endpoints["tcp"].startswith("tcp://127.0.0.1:")
        assert record.endpoints["http"].startswith("http://127.0.0.1:")
        assert record.endpoints["unix"].startswith("unix://")
        assert await client.call("pcalc.add", {"a": 1, "b": 1}) == 2


async def test_what_a_provider_declares_for_its_callers_is_published_and_kept(
    registry: str, socket: str
) -> None:
    release = anyio.Event()
    started = anyio.Event()
    svc = jesus.Service("pvault")

    @svc.method(idempotent=True, retry=4, timeout=3.5)
    async def read(data: Any) -> Any:
        return data

    @svc.method(concurrency=1, retry=1)
    async def hold(data: Any) -> Any:
        started.set()
        await release.wait()
        return "held"

    async with (
        run_daemon(socket, registry=registry),
        provide(svc, socket=socket),
        jesus.Client(registry) as client,
    ):
        method = (await client.resolver.backend.list_instances("pvault"))[0].methods["read"]
        assert (method.idempotent, method.retry.attempts, method.timeout) == (True, 4, 3.5)
        async with anyio.create_task_group() as tg:
            held: list[Any] = []

            async def holding() -> None:
                held.append(await client.call("pvault.hold"))

            tg.start_soon(holding)
            with anyio.fail_after(10):
                await started.wait()  # the call holds the slot
            # The daemon keeps the process's bulkhead: a second call is refused at once.
            with pytest.raises(jesus.ResourceExhausted, match="concurrency=1"):
                await client.call("pvault.hold")
            release.set()
        assert held == ["held"]
