"""The transport conformance suite: what every transport plugin must do.

A transport plugin (ours or yours) proves it keeps jesus's promises by subclassing
`TransportConformance` in a test module; pytest then runs every check below against it, on
whichever anyio backends your `anyio_backend` fixture names:

    import anyio, jesus
    from jesus.testing.transport import TransportConformance, exchange

    class TestQuic(TransportConformance):
        channel = "quic+msgpack"                  # what the suite's services use
        compressed_channel = "quic+msgpack+zstd"  # the same transport, compressed
        modes = frozenset(jesus.ResponseMode)     # what your plugin's `modes` declares
        tls = True                                # your plugin's `tls` attribute
        cancel = True                             # a caller cancelling stops the handler

        async def send_raw(self, node: jesus.Node, data: bytes) -> bytes:
            # Open a raw connection to node.endpoints["quic"], send `data`, and return what
            # came back within about a second (or until the server closed).
            ...

The suite needs pytest, anyio's pytest plugin and, for the TLS checks only, trustme. It
brings its own private registry (under `tmp_path`) and declares its own services, and uses
only the public API, so what passes here works for every user of jesus. Every check is short
(small payloads, sub-second sleeps): the whole suite takes a few seconds per backend.
"""

from __future__ import annotations

import dataclasses
import os
import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio
import pytest

import jesus
from jesus.plugins import build_catalog, default_catalog, get_plugin_manager

__all__ = ["TransportConformance", "conformance_service", "exchange", "wait_until"]

KiB = 1024
MiB = 1024 * KiB

ADD_REQUEST = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}

# Every error class that has a wire code; each must come back to the caller as itself.
WIRE_ERRORS: dict[str, type[jesus.CallError]] = {
    cls.__name__: cls
    for cls in (
        jesus.UnknownMethod,
        jesus.InvalidRequest,
        jesus.InvalidResponse,
        jesus.DeadlineExceeded,
        jesus.Unavailable,
        jesus.WrongChannel,
        jesus.PermissionDenied,
        jesus.SealRefused,
        jesus.TooLarge,
        jesus.Cancelled,
        jesus.BadFrame,
        jesus.RemoteFailure,
    )
}


# ---------------------------------------------------------------------------- helpers


async def wait_until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    """Poll `condition` until it holds; fail the check after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not condition():  # noqa: ASYNC110 - polls plain state the handlers change
            await anyio.sleep(0.01)


async def exchange(stream: Any, data: bytes, timeout: float = 1.0) -> bytes:
    """For `send_raw` over a byte stream: send `data`, half-close when the stream allows it
    (so a server waiting for more bytes sees the end at once), and return every byte received
    until the server closed or `timeout` passed."""
    received = b""
    async with stream:
        with anyio.move_on_after(timeout):
            try:
                if data:
                    await stream.send(data)
                if hasattr(stream, "send_eof"):
                    try:
                        await stream.send_eof()
                    except (NotImplementedError, OSError):
                        pass
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
            except OSError:  # e.g. a reset by a server that refused the bytes
                pass
    return received


def meta_dict(meta: jesus.Meta | None) -> dict[str, Any]:
    """What a handler saw of its call, in a form every codec carries."""
    assert meta is not None, "current_call() is None inside a handler"
    return {
        "corrid": meta.corrid,
        "userid": meta.userid,
        "sender": meta.sender,
        "req_out_ts": meta.req_out_ts,
        "req_in_ts": meta.req_in_ts,
        "channel": meta.channel,
        "mode": str(meta.mode),
        "deadline_ms": meta.deadline_ms,
        "traceparent": meta.traceparent,
    }


# ---------------------------------------------------------------------------- services


@dataclass
class State:
    """What the handlers of `conformance_service` saw and did."""

    calls: Counter[str] = field(default_factory=Counter)
    corrids: list[str] = field(default_factory=list)
    acked: list[Any] = field(default_factory=list)
    notified: list[Any] = field(default_factory=list)
    # ack and noResponse handlers wait on this gate, so a test can see them still running.
    gate: anyio.Event = field(default_factory=anyio.Event)
    sleep_started: anyio.Event = field(default_factory=anyio.Event)
    sleep_stopped: int = 0  # `sleep` handlers ended by cancellation
    sleep_stopped_at: float | None = None
    sleep_deadline_ms: int | None = None
    produced: int = 0  # stream items yielded
    produced_bytes: int = 0
    stream_stopped: int = 0  # generators closed before their end
    held: int = 0  # `hold` calls that started


def conformance_service(
    channel: str, modes: frozenset[jesus.ResponseMode], name: str = "conf"
) -> tuple[jesus.Service, State]:
    """A service with a method for each check; stream methods only where `modes` has it."""
    svc = jesus.Service(name, channel=channel)
    state = State()

    @svc.method(request=ADD_REQUEST, response={"type": "integer"})
    async def add(data: dict[str, int]) -> int:
        state.calls["add"] += 1
        meta = jesus.current_call()
        state.corrids.append(meta.corrid if meta else "")
        return data["a"] + data["b"]

    @svc.method()
    async def echo(data: Any) -> Any:
        return data

    @svc.method()
    async def meta(data: Any) -> dict[str, Any]:
        return meta_dict(jesus.current_call())

    @svc.method(response={"type": "integer"})
    async def wrong(data: Any) -> Any:
        state.calls["wrong"] += 1
        return "not an integer"

    @svc.method()
    async def boom(data: Any) -> Any:
        raise ValueError("kaput")

    @svc.method(request={"type": "object", "required": ["error", "message"]})
    async def fail(data: dict[str, str]) -> Any:
        meta = jesus.current_call()
        state.corrids.append(meta.corrid if meta else "")
        raise WIRE_ERRORS[data["error"]](data["message"])

    @svc.method()
    async def unencodable(data: Any) -> Any:
        return {"x": object()}

    @svc.method()
    async def hold(data: Any) -> int:
        """Holds its request until the gate opens: a call in flight with its payload."""
        state.held += 1
        await state.gate.wait()
        return len(data)

    @svc.method(request={"type": "integer"})
    async def big(data: int) -> str:
        return os.urandom(data // 2).hex()  # incompressible, `data` characters

    @svc.method(request={"type": "number"})
    async def sleep(data: float) -> str:
        meta = jesus.current_call()
        state.sleep_deadline_ms = meta.deadline_ms if meta else None
        state.sleep_started.set()
        try:
            await anyio.sleep(data)
        except BaseException:
            state.sleep_stopped += 1
            state.sleep_stopped_at = anyio.current_time()
            raise
        return "slept"

    @svc.method()
    async def whoami(data: Any) -> dict[str, Any] | None:
        caller = jesus.current_caller()
        return None if caller is None else dataclasses.asdict(caller)

    @svc.method(allow=["friend"])
    async def guarded(data: Any) -> str:
        state.calls["guarded"] += 1
        return "welcome"

    @svc.method(mode="ack", request={"type": "object"})
    async def record(data: Any) -> None:
        await state.gate.wait()
        state.acked.append(data)

    @svc.method(mode="noResponse")
    async def fire(data: Any) -> None:
        await state.gate.wait()
        state.notified.append(data)

    if jesus.ResponseMode.STREAM in modes:

        @svc.method(mode="stream", response={"type": "integer"})
        async def count(data: dict[str, Any]) -> AsyncIterator[int]:
            try:
                for i in range(data["n"]):
                    state.produced = i + 1
                    yield i
                    if data.get("delay"):
                        await anyio.sleep(data["delay"])
                if data.get("fail"):
                    raise RuntimeError("stream broke midway")
            except BaseException:
                state.stream_stopped += 1
                raise

        @svc.method(mode="stream", request={"type": "object", "required": ["n", "size"]})
        async def blobs(data: dict[str, int]) -> AsyncIterator[str]:
            blob = os.urandom(data["size"] // 2).hex()  # one incompressible item, resent
            try:
                for _ in range(data["n"]):
                    state.produced += 1
                    state.produced_bytes += len(blob)
                    yield blob
            except BaseException:
                state.stream_stopped += 1
                raise

    return svc, state


@asynccontextmanager
async def serving(
    registry: str,
    *services: jesus.Service,
    client: dict[str, Any] | None = None,
    **serve_kwargs: Any,
) -> AsyncIterator[tuple[jesus.Node, jesus.Client]]:
    """Serve `services` and connect a client to them."""
    async with (
        jesus.serve(*services, registry=registry, **serve_kwargs) as node,
        jesus.Client(registry, **(client or {})) as caller,
    ):
        yield node, caller


def catalog_with(*middleware: jesus.Middleware) -> Any:
    """A catalog of the installed plugins plus `middleware`, registered the way a plugin does."""

    class Plugin:
        @jesus.hookimpl
        def jesus_register_middleware(self, register: Any) -> None:
            for mw in middleware:
                register(mw)

    pm, failures = get_plugin_manager()
    pm.register(Plugin(), name=f"conformance-{id(middleware)}")
    return build_catalog(pm, failures)


class Recorder(jesus.Middleware):
    """Sees both ends of every call; the client side adds a traceparent for the server."""

    name = "conformance-recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    async def client(self, call: jesus.CallInfo, call_next: Any) -> Any:
        call.meta.traceparent = f"00-{call.meta.corrid}-01"
        self.seen.append(("client", call.method, call.meta.corrid))
        return await call_next(call)

    async def server(self, call: jesus.CallInfo, call_next: Any) -> Any:
        self.seen.append(("server", call.method, call.meta.traceparent))
        return await call_next(call)


class Gatekeeper(jesus.Middleware):
    """Refuses calls without a user, the way an auth plugin would."""

    name = "conformance-gatekeeper"

    async def server(self, call: jesus.CallInfo, call_next: Any) -> Any:
        if call.meta.userid is None:
            raise PermissionError("who are you?")
        return await call_next(call)


# ---------------------------------------------------------------------------- the suite


class TransportConformance:
    """Subclass, set the class attributes and `send_raw`, to check a transport plugin."""

    pytestmark = pytest.mark.anyio

    channel: ClassVar[str]
    compressed_channel: ClassVar[str]
    modes: ClassVar[frozenset[jesus.ResponseMode]] = frozenset(jesus.ResponseMode)
    tls: ClassVar[bool] = False
    # Reachable only from this machine, guarded by file permissions (unix): TLS is not needed.
    local: ClassVar[bool] = False
    cancel: ClassVar[bool] = True
    # Stream items flow under the credit window (Limits.stream_window); without it, the byte
    # stream's own back-pressure bounds a stream (HTTP/1.1).
    credit: ClassVar[bool] = True
    # Calls travel on connections, so a client hears at once that a server went away
    # (datagrams do not: such a call fails at its deadline instead).
    connected: ClassVar[bool] = True
    # Read-side back-pressure, for transports over byte streams: `connect_raw` opens a raw
    # connection, `flood_opening` starts it (a handshake), and each `flood_unit` makes the
    # server answer (a PING, a small request). Leave `flood_unit` empty where there is no
    # peer to stop reading from (datagrams: the socket drops what the server cannot take).
    flood_opening: ClassVar[bytes] = b""
    flood_unit: ClassVar[bytes] = b""

    async def send_raw(self, node: jesus.Node, data: bytes) -> bytes:
        """Send raw bytes to the server's endpoint for this transport; return whatever came
        back within ~1 s (or until the server closed)."""
        return await exchange(await self.connect_raw(node), data)

    async def connect_raw(self, node: jesus.Node) -> Any:
        """A raw byte stream to the server's endpoint for this transport (for `send_raw` and
        the back-pressure check); datagram transports override `send_raw` instead."""
        raise NotImplementedError

    @pytest.fixture
    def registry(self, tmp_path: Path) -> str:
        return f"embedded://{tmp_path / 'registry'}"

    @property
    def scheme(self) -> str:
        return jesus.ChannelSpec.parse(self.channel).transport

    def service(
        self, name: str = "conf", channel: str | None = None
    ) -> tuple[jesus.Service, State]:
        return conformance_service(channel or self.channel, self.modes, name)

    def needs(self, mode: jesus.ResponseMode) -> None:
        if mode not in self.modes:
            pytest.skip(f"{self.scheme} does not carry {mode.value!r}")

    # ------------------------------------------------------------ 1. modes and declarations

    def test_declarations_match_the_installed_plugin(self) -> None:
        """What the subclass claims is what the plugin tells the core (which relies on it)."""
        transport = default_catalog().transports[self.scheme]
        assert transport.modes == self.modes
        assert transport.local == self.local
        assert getattr(transport, "tls", None) == self.tls, (
            f"the {self.scheme} transport plugin should declare tls={self.tls}"
        )
        assert str(jesus.ChannelSpec.parse(self.compressed_channel).compression) != "none"
        assert jesus.ChannelSpec.parse(self.compressed_channel).transport == self.scheme

    async def test_response(self, registry: str) -> None:
        svc, _ = self.service()
        async with serving(registry, svc) as (node, client):
            assert self.scheme in node.endpoints
            assert await client.call("conf.add", {"a": 2, "b": 3}) == 5
            values = [None, True, 0, -(2**40), 1.5, "é", [1, [2]], {"k": {"v": None}}]
            for value in values:
                assert await client.call("conf.echo", value) == value

    async def test_ack_returns_once_accepted_and_the_handler_runs_after(
        self, registry: str
    ) -> None:
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            with anyio.fail_after(2):  # the handler is blocked on its gate: no waiting for it
                assert await client.call("conf.record", {"n": 1}) is None
            assert state.acked == []
            state.gate.set()
            await wait_until(lambda: state.acked == [{"n": 1}])

    async def test_no_response_returns_at_once(self, registry: str) -> None:
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            with anyio.fail_after(2):
                assert await client.call("conf.fire", {"n": 1}) is None
                await client.notify("conf.fire", {"n": 2})  # returns None, at once
            assert state.notified == []
            state.gate.set()
            await wait_until(lambda: sorted(d["n"] for d in state.notified) == [1, 2])

    async def test_stream_items_arrive_in_order(self, registry: str) -> None:
        self.needs(jesus.ResponseMode.STREAM)
        svc, _ = self.service()
        async with serving(registry, svc) as (_, client):
            assert [i async for i in client.stream("conf.count", {"n": 300})] == list(range(300))
            assert [i async for i in client.stream("conf.count", {"n": 0})] == []

    async def test_compressed_channel_round_trips(self, registry: str) -> None:
        svc, _ = self.service(channel=self.compressed_channel)
        async with serving(registry, svc) as (_, client):
            big = {"blob": "jesus " * 20_000}  # compresses far below any message limit
            assert await client.call("conf.echo", big) == big
            assert await client.call("conf.add", {"a": 1, "b": 2}) == 3
            if jesus.ResponseMode.STREAM in self.modes:
                assert [i async for i in client.stream("conf.count", {"n": 20})] == list(range(20))

    async def test_undeclared_modes_are_refused_at_serve(self, registry: str) -> None:
        """A method over a transport that cannot carry its mode fails to start, loudly."""
        missing = [m for m in jesus.ResponseMode if m not in self.modes]
        if not missing:
            pytest.skip(f"{self.scheme} carries every mode")
        for mode in missing:
            svc = jesus.Service("undeclared", channel=self.channel)
            if mode is jesus.ResponseMode.STREAM:

                @svc.method(mode=mode)
                async def items(data: Any) -> AsyncIterator[Any]:
                    yield 1

            else:

                @svc.method(mode=mode)
                async def handler(data: Any) -> Any:
                    return None

            with pytest.raises(jesus.ConfigurationError) as refused:
                async with jesus.serve(svc, registry=registry):
                    pass
            assert mode.value in str(refused.value) and self.scheme in str(refused.value)

    # ------------------------------------------------------------ 2. typed errors

    async def test_each_wire_error_arrives_as_its_class(self, registry: str) -> None:
        svc, state = self.service()
        wrong: list[str] = []
        async with serving(registry, svc) as (_, client):
            for name, cls in WIRE_ERRORS.items():
                message = f"deliberate {name}"
                try:
                    await client.call("conf.fail", {"error": name, "message": message})
                except jesus.CallError as exc:
                    got = (type(exc), exc.remote, exc.message, exc.corrid)
                    if got != (cls, True, message, state.corrids[-1]):
                        wrong.append(f"{name}: got {got}, corrid {state.corrids[-1]}")
                else:
                    wrong.append(f"{name}: the call succeeded")
            assert not wrong, "\n".join(wrong)
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_real_errors(self, registry: str) -> None:
        svc, _ = self.service()
        async with serving(registry, svc, client={"validate": False}) as (node, client):
            with pytest.raises(jesus.RemoteFailure, match="ValueError: kaput") as failed:
                await client.call("conf.boom")
            assert failed.value.remote and failed.value.corrid
            with pytest.raises(jesus.InvalidRequest) as invalid:
                await client.call("conf.add", {"a": "x"})
            assert invalid.value.remote and invalid.value.corrid
            with pytest.raises(jesus.InvalidResponse) as bad:
                await client.call("conf.wrong")
            assert bad.value.remote and bad.value.corrid
            # A stale registry entry advertises a method the server no longer has.
            (record,) = node.records
            stale = dataclasses.replace(
                record,
                instance_id=record.instance_id + "-stale",
                methods={**record.methods, "nope": record.methods["add"]},
            )
            await node.client.resolver.backend.register(stale, 30)
            async with jesus.Client(registry) as fresh:
                with pytest.raises(jesus.UnknownMethod) as unknown:
                    await fresh.call("conf.nope", {"a": 1, "b": 2})
                assert unknown.value.remote and unknown.value.corrid
            # what the registry does not list fails before sending
            with pytest.raises(jesus.UnknownMethod) as unlisted:
                await client.call("conf.missing")
            assert not unlisted.value.remote
            with pytest.raises(jesus.ServiceNotFound):
                await client.call("nobody.home")
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_an_unencodable_result_is_an_error_not_a_hang(self, registry: str) -> None:
        svc, _ = self.service()
        async with serving(registry, svc) as (_, client):
            with anyio.fail_after(2), pytest.raises(jesus.InvalidResponse) as bad:
                await client.call("conf.unencodable")
            assert bad.value.remote
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_stream_error_midway_reaches_the_caller(self, registry: str) -> None:
        self.needs(jesus.ResponseMode.STREAM)
        svc, _ = self.service()
        async with serving(registry, svc) as (_, client):
            seen = []
            with pytest.raises(jesus.RemoteFailure, match="stream broke midway") as failed:
                async for item in client.stream("conf.count", {"n": 3, "fail": True}):
                    seen.append(item)
            assert seen == [0, 1, 2] and failed.value.remote

    # ------------------------------------------------------------ 3. validation on both ends

    async def test_the_client_refuses_an_invalid_request_before_sending(
        self, registry: str
    ) -> None:
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            with pytest.raises(jesus.InvalidRequest) as invalid:
                await client.call("conf.add", {"a": 1})
            assert not invalid.value.remote
            assert any("b" in str(d) for d in invalid.value.details)
            assert state.calls["add"] == 0

    async def test_the_server_refuses_an_invalid_request(self, registry: str) -> None:
        svc, state = self.service()
        async with serving(registry, svc, client={"validate": False}) as (_, client):
            with pytest.raises(jesus.InvalidRequest) as invalid:
                await client.call("conf.add", {"a": "x", "b": 1})
            assert invalid.value.remote
            assert any("/a" in str(d) for d in invalid.value.details)
            # an ack is given only for a request that passed validation
            with pytest.raises(jesus.InvalidRequest) as not_acked:
                await client.call("conf.record", ["not", "an", "object"])
            assert not_acked.value.remote
            assert state.calls["add"] == 0

    async def test_the_server_refuses_an_invalid_response(self, registry: str) -> None:
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            with pytest.raises(jesus.InvalidResponse, match="response schema") as bad:
                await client.call("conf.wrong")
            assert bad.value.remote and state.calls["wrong"] == 1

    # ------------------------------------------------------------ 4. meta

    async def test_meta_reaches_the_handler(self, registry: str) -> None:
        svc, _ = self.service()
        async with serving(registry, svc, client={"name": "tester"}) as (_, client):
            before = time.time()
            seen = await client.call("conf.meta", None, userid="ann", timeout=5)
            after = time.time()
            again = await client.call("conf.meta")
        assert isinstance(seen["corrid"], str) and seen["corrid"]
        assert again["corrid"] != seen["corrid"]
        assert (seen["userid"], seen["sender"], seen["mode"]) == ("ann", "tester", "response")
        assert isinstance(seen["req_out_ts"], float) and isinstance(seen["req_in_ts"], float)
        assert before <= seen["req_out_ts"] <= seen["req_in_ts"] <= after
        assert jesus.ChannelSpec.parse(seen["channel"]) == jesus.ChannelSpec.parse(self.channel)
        assert 0 < seen["deadline_ms"] <= 5000

    async def test_corrid_and_deadline_flow_into_nested_calls(self, registry: str) -> None:
        back, _ = self.service()
        front = jesus.Service("front", channel=self.channel)

        @front.method()
        async def relay(data: Any) -> dict[str, Any]:
            parent = meta_dict(jesus.current_call())
            return {"parent": parent, "child": await front.call("conf.meta", None, timeout=30)}

        async with serving(registry, back, front) as (_, client):
            seen = await client.call("front.relay", None, timeout=5)
        parent, child = seen["parent"], seen["child"]
        assert child["corrid"] == parent["corrid"]
        assert child["sender"] == "front"
        assert 0 < child["deadline_ms"] <= parent["deadline_ms"] <= 5000

    # ------------------------------------------------------------ 5. deadlines, cancellation

    async def test_a_client_timeout_is_typed_and_stops_the_handler(self, registry: str) -> None:
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            started = anyio.current_time()
            with pytest.raises(jesus.DeadlineExceeded):
                await client.call("conf.sleep", 30, timeout=0.2)
            assert anyio.current_time() - started < 1.5
            await wait_until(lambda: state.sleep_stopped == 1)
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_an_enclosing_fail_after_bounds_the_call(self, registry: str) -> None:
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            started = anyio.current_time()
            with pytest.raises(TimeoutError), anyio.fail_after(0.2):
                await client.call("conf.sleep", 30)
            assert anyio.current_time() - started < 1.5
            await wait_until(lambda: state.sleep_stopped == 1)  # the deadline travelled

    async def test_nested_calls_never_outlive_their_parent(self, registry: str) -> None:
        back, state = self.service()
        front = jesus.Service("front", channel=self.channel)
        seen: dict[str, Any] = {}

        @front.method()
        async def chain(data: Any) -> Any:
            meta = jesus.current_call()
            seen["parent_ms"] = meta.deadline_ms if meta else None
            # Asks for 30 s, but the parent has only ~300 ms left: the nested call gets less.
            return await front.call("conf.sleep", 30, timeout=30)

        async with serving(registry, back, front) as (_, client):
            started = anyio.current_time()
            with pytest.raises(jesus.DeadlineExceeded):
                await client.call("front.chain", None, timeout=0.3)
            await wait_until(lambda: state.sleep_stopped == 1)
            assert state.sleep_stopped_at is not None
            assert state.sleep_stopped_at - started < 1.5
            assert 0 < seen["parent_ms"] <= 300
            assert state.sleep_deadline_ms is not None
            assert 0 < state.sleep_deadline_ms <= seen["parent_ms"]

    async def test_the_caller_cancelling_stops_the_handler(self, registry: str) -> None:
        """Where the transport cannot tell the server (udp), the call's deadline does."""
        svc, state = self.service()
        timeout = 30 if self.cancel else 0.5
        async with serving(registry, svc) as (_, client):
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: client.call("conf.sleep", 30, timeout=timeout))
                with anyio.fail_after(2):
                    await state.sleep_started.wait()
                cancelled_at = anyio.current_time()
                tg.cancel_scope.cancel()
            await wait_until(lambda: state.sleep_stopped == 1, timeout=3)
            assert state.sleep_stopped_at is not None
            # cancelled at once, or (no cancel over this transport) at its 0.5 s deadline
            assert state.sleep_stopped_at - cancelled_at < (1.5 if self.cancel else 2.0)
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_leaving_a_stream_early_stops_the_generator(self, registry: str) -> None:
        self.needs(jesus.ResponseMode.STREAM)
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            async for item in client.stream("conf.count", {"n": 100_000, "delay": 0.001}):
                if item == 5:
                    break
            await wait_until(lambda: state.stream_stopped == 1)
            assert state.produced < 100_000
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_a_stream_past_its_deadline_is_stopped(self, registry: str) -> None:
        self.needs(jesus.ResponseMode.STREAM)
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            received = []
            with pytest.raises(jesus.DeadlineExceeded):
                async for item in client.stream(
                    "conf.count", {"n": 1000, "delay": 0.05}, timeout=0.3
                ):
                    received.append(item)
            assert 0 < len(received) < 1000
            await wait_until(lambda: state.stream_stopped == 1)

    async def test_a_stream_that_never_pauses_still_ends_at_its_deadline(
        self, registry: str
    ) -> None:
        """Items keep arriving (no wait in which a timer could fire): the deadline holds."""
        self.needs(jesus.ResponseMode.STREAM)
        svc, state = self.service()
        async with serving(registry, svc) as (_, client):
            began = anyio.current_time()
            with anyio.fail_after(10), pytest.raises(jesus.DeadlineExceeded, match=r"0\.300s"):
                async for _ in client.stream("conf.count", {"n": 10**9}, timeout=0.3):
                    pass
            assert anyio.current_time() - began < 5
            await wait_until(lambda: state.stream_stopped == 1)

    # ------------------------------------------------------------ 6. back-pressure

    async def test_a_stalled_consumer_keeps_the_server_bounded(self, registry: str) -> None:
        """200 MiB of 64 KiB items to a consumer that stops reading: the server must wait."""
        self.needs(jesus.ResponseMode.STREAM)
        svc, state = self.service()
        limits = jesus.Limits(stream_window=4, write_buffer_size=256 * KiB)
        size, n = 64 * KiB, 3200
        async with serving(registry, svc, limits=limits, client={"limits": limits}) as (
            _,
            client,
        ):
            stream = client.stream("conf.blobs", {"n": n, "size": size})
            async with aclosing(stream) as items:  # type: ignore[type-var]
                assert len(await items.__anext__()) == size
                await anyio.sleep(0.5)  # stall
                assert state.produced_bytes < 16 * MiB, (
                    f"{state.produced_bytes / MiB:.0f} MiB produced for a stalled consumer"
                )
                for _ in range(3):  # still alive after the stall
                    assert len(await items.__anext__()) == size
            await wait_until(lambda: state.stream_stopped == 1)
            assert state.produced < n

    async def test_a_slow_consumer_keeps_production_within_the_window(self, registry: str) -> None:
        self.needs(jesus.ResponseMode.STREAM)
        if not self.credit:
            pytest.skip(f"{self.scheme} streams have no credit window: see the stalled consumer")
        svc, state = self.service()
        window = 8
        limits = jesus.Limits(stream_window=window)
        async with serving(registry, svc, limits=limits, client={"limits": limits}) as (
            _,
            client,
        ):
            consumed = 0
            ahead = []
            async for _ in client.stream("conf.count", {"n": 200}):
                consumed += 1
                await anyio.sleep(0.002)
                ahead.append(state.produced - consumed)
                if consumed == 60:
                    break
            # the window, plus the item being yielded
            assert max(ahead) <= window + 1, f"produced ran {max(ahead)} items ahead"
            assert state.produced < 200

    async def test_a_slow_consumer_keeps_production_within_the_byte_window(
        self, registry: str
    ) -> None:
        """An item window too large to matter: the byte window alone holds the producer."""
        self.needs(jesus.ResponseMode.STREAM)
        if not self.credit:
            pytest.skip(f"{self.scheme} streams have no credit window: see the stalled consumer")
        svc, state = self.service()
        size, window_bytes = 8 * KiB, 128 * KiB
        limits = jesus.Limits(stream_window=100_000, stream_window_bytes=window_bytes)
        async with serving(registry, svc, limits=limits, client={"limits": limits}) as (
            _,
            client,
        ):
            consumed = 0
            ahead = []
            async for _ in client.stream("conf.blobs", {"n": 400, "size": size}):
                consumed += 1
                await anyio.sleep(0.002)
                ahead.append((state.produced - consumed) * size)
                if consumed == 100:
                    break
            # the window, one frame sent on the last byte of credit, one frame being
            # consumed (credited when the consumer reaches its end), the item being yielded
            bound = window_bytes + 2 * 32 * KiB + size
            assert max(ahead) <= bound, f"produced ran {max(ahead) // KiB} KiB ahead"
            assert state.produced < 400

    # ------------------------------------------------------------ 7. drain and middleware

    async def test_shutdown_drains_in_flight_calls(self, registry: str) -> None:
        svc, state = self.service()
        results: list[Any] = []
        async with jesus.Client(registry) as client:
            async with anyio.create_task_group() as tg:
                async with jesus.serve(svc, registry=registry):
                    assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

                    async def slow_call() -> None:
                        results.append(await client.call("conf.sleep", 0.3, timeout=5))

                    tg.start_soon(slow_call)
                    with anyio.fail_after(2):
                        await state.sleep_started.wait()
                # serve() returned only after the call in flight was answered
                assert results == ["slept"]
            assert state.sleep_stopped == 0
            gone = jesus.Unavailable if self.connected else (jesus.Unavailable, TimeoutError)
            with anyio.fail_after(3), pytest.raises(gone):
                await client.call("conf.add", {"a": 1, "b": 1}, timeout=1)
        async with jesus.Client(registry) as fresh:
            with anyio.fail_after(3), pytest.raises(jesus.ServiceNotFound):
                await fresh.call("conf.add", {"a": 1, "b": 1}, timeout=1)

    async def test_a_handler_that_outlives_the_drain_timeout_does_not_hold_shutdown(
        self, registry: str
    ) -> None:
        """serve() waits `drain_timeout` for calls in flight, then stops them and returns."""
        svc, state = self.service()
        with anyio.fail_after(10):
            await self._outlive_the_drain(registry, svc, state)

    async def _outlive_the_drain(self, registry: str, svc: Any, state: State) -> None:
        async with jesus.Client(registry) as client:
            started = anyio.current_time()
            async with (
                anyio.create_task_group() as tg,
                jesus.serve(svc, registry=registry, drain_timeout=0.3),
            ):
                tg.start_soon(client.notify, "conf.sleep", 30)
                with anyio.fail_after(2):
                    await state.sleep_started.wait()
            assert anyio.current_time() - started < 5
            await wait_until(lambda: state.sleep_stopped == 1)

    async def test_middleware_sees_both_ends(self, registry: str) -> None:
        recorder = Recorder()
        catalog = catalog_with(recorder)
        svc, _ = self.service()
        async with serving(registry, svc, catalog=catalog, client={"catalog": catalog}) as (
            _,
            client,
        ):
            seen = await client.call("conf.meta")
            streams = jesus.ResponseMode.STREAM in self.modes
            if streams:
                assert [i async for i in client.stream("conf.count", {"n": 2})] == [0, 1]
        trace = f"00-{seen['corrid']}-01"
        assert seen["traceparent"] == trace  # the client's change reached the handler
        assert recorder.seen[:2] == [("client", "meta", seen["corrid"]), ("server", "meta", trace)]
        if streams:
            (_, _, corrid), opened = recorder.seen[2], recorder.seen[3]
            assert recorder.seen[2][:2] == ("client", "count")
            assert opened == ("server", "count", f"00-{corrid}-01")

    async def test_a_refusing_middleware_answers_the_caller(self, registry: str) -> None:
        catalog = catalog_with(Gatekeeper())
        svc, state = self.service()
        async with serving(registry, svc, catalog=catalog) as (_, client):
            with pytest.raises(jesus.RemoteFailure, match="who are you") as refused:
                await client.call("conf.add", {"a": 1, "b": 2})
            assert refused.value.remote and state.calls["add"] == 0
            assert await client.call("conf.add", {"a": 1, "b": 2}, userid="ann") == 3
            if jesus.ResponseMode.STREAM in self.modes:
                with pytest.raises(jesus.RemoteFailure, match="who are you"):
                    async for _ in client.stream("conf.count", {"n": 2}):
                        pass
                assert [i async for i in client.stream("conf.count", {"n": 1}, userid="ann")] == [0]

    # ------------------------------------------------------------ 8. named limits

    async def test_max_message_size_at_the_client(self, registry: str) -> None:
        svc, _ = self.service()
        limits = jesus.Limits(max_message_size=2000)
        async with serving(registry, svc, client={"limits": limits}) as (_, client):
            with pytest.raises(jesus.TooLarge) as refused:
                await client.call("conf.echo", os.urandom(2500).hex())
            assert not refused.value.remote  # never sent
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_max_message_size_at_the_server(self, registry: str) -> None:
        """A client allowed more than the server still gets a typed refusal, and no crash."""
        svc, _ = self.service()
        limits = jesus.Limits(max_message_size=2000)
        async with serving(registry, svc, limits=limits) as (_, client):
            with pytest.raises(jesus.TooLarge):
                await client.call("conf.echo", os.urandom(2500).hex())
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_a_result_too_large_for_the_server_is_refused(self, registry: str) -> None:
        svc, _ = self.service()
        limits = jesus.Limits(max_message_size=2000)
        async with serving(registry, svc, limits=limits) as (_, client):
            assert len(await client.call("conf.big", 500)) == 500
            with pytest.raises(jesus.TooLarge) as refused:
                await client.call("conf.big", 5000)
            assert refused.value.remote
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_max_decompressed_size_refuses_a_bomb(self, registry: str) -> None:
        svc, _ = self.service(channel=self.compressed_channel)
        limits = jesus.Limits(max_decompressed_size=1 * MiB)
        async with serving(registry, svc, limits=limits) as (_, client):
            with pytest.raises(jesus.TooLarge) as refused:
                await client.call("conf.echo", "a" * (4 * MiB))  # a few hundred bytes zipped
            assert refused.value.remote
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_decoded_bytes_in_flight_are_budgeted(self, registry: str) -> None:
        """Requests that a few bytes on the wire inflate into megabytes are counted after
        decoding: past the peer's budget, calls are refused UNAVAILABLE until some finish."""
        svc, state = self.service(channel=self.compressed_channel)
        # Both budgets: a transport may carry each call on a connection of its own (http).
        limits = jesus.Limits(max_inflight_bytes=3 * MiB, max_server_inflight_bytes=3 * MiB)
        blob = "a" * MiB  # a few hundred bytes compressed
        async with serving(registry, svc, limits=limits) as (_, client):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(client.call, "conf.hold", blob)
                await wait_until(lambda: state.held == 2)
                with pytest.raises(jesus.Unavailable, match="inflight_bytes"):
                    await client.call("conf.hold", blob * 2)
                assert await client.call("conf.add", {"a": 1, "b": 1}) == 2  # small: fits
                state.gate.set()
            assert await client.call("conf.hold", blob * 2) == 2 * MiB  # room again

    async def test_a_few_bytes_cannot_decode_into_millions_of_values(self, registry: str) -> None:
        svc, _ = self.service(channel=self.compressed_channel)
        limits = jesus.Limits(max_decoded_items=10_000)
        async with serving(registry, svc, limits=limits) as (_, client):
            with pytest.raises(jesus.TooLarge, match="max_decoded_items"):
                await client.call("conf.echo", [{}] * 20_000)  # compresses to almost nothing
            assert await client.call("conf.echo", [{}] * 1000) == [{}] * 1000
            assert await client.call("conf.echo", "," * 50_000) == "," * 50_000

    async def test_a_deeply_nested_request_gets_an_answer(self, registry: str) -> None:
        svc, _ = self.service()
        deep: Any = None
        for _ in range(2000):
            deep = [deep]
        async with serving(registry, svc) as (_, client):
            # Refused with a typed error by one end or the other, never a RecursionError or a
            # dropped connection.
            with pytest.raises(jesus.CallError):
                await client.call("conf.echo", deep)
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_a_peer_that_does_not_read_stops_being_read(self, registry: str) -> None:
        """A peer that keeps sending and never reads its answers stops being read once
        write_buffer_size of answers wait for it: its sends block in the kernel's buffers,
        instead of the server queueing every answer."""
        if not self.flood_unit:
            pytest.skip(f"{self.scheme} has no peer to stop reading from")
        svc, _ = self.service()
        limits = jesus.Limits(write_buffer_size=64 * KiB)
        total = 64 * MiB
        chunk = self.flood_unit * (MiB // len(self.flood_unit))
        sent = 0
        async with serving(registry, svc, limits=limits) as (node, client):  # noqa: SIM117
            async with await self.connect_raw(node) as stream:  # needs the node's endpoint
                await stream.send(self.flood_opening)
                while sent < total:
                    with anyio.move_on_after(1) as blocked:
                        await stream.send(chunk)
                    if blocked.cancelled_caught:
                        break
                    sent += len(chunk)
                assert sent < total, "the server read everything it was sent"
                assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    # ------------------------------------------------------------ 9. bad input

    async def test_garbage_from_a_peer_leaves_the_server_serving(self, registry: str) -> None:
        svc, _ = self.service()
        garbage = {
            "random": random.Random(7).randbytes(4096),  # the same bytes every run
            "empty": b"",
            "zeros": b"\x00" * 10,
            "blob": random.Random(8).randbytes(64 * KiB),
        }
        async with serving(registry, svc) as (node, client):
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2
            replies: dict[str, bytes] = {}

            async def send(name: str) -> None:
                replies[name] = await self.send_raw(node, garbage[name])

            with anyio.fail_after(5):
                async with anyio.create_task_group() as tg:  # each on its own connection
                    for name in garbage:
                        tg.start_soon(send, name)
            assert set(replies) == set(garbage)
            assert all(isinstance(r, bytes) for r in replies.values())
            assert await client.call("conf.add", {"a": 20, "b": 22}) == 42
            async with jesus.Client(registry) as fresh:
                assert await fresh.call("conf.add", {"a": 2, "b": 2}) == 4

    # ------------------------------------------------------------ 10. where a method is served

    async def test_a_method_is_served_only_over_its_declared_transports(
        self, registry: str
    ) -> None:
        """A call that arrives over a transport its method is not declared on is refused
        WRONG_CHANNEL, and its handler does not run: no side door."""
        other = _other_transport(self.scheme, jesus.ResponseMode.RESPONSE)
        if other is None:
            pytest.skip("no other transport is installed")
        svc, state = self.service()

        @svc.method(channel=other)
        async def elsewhere(data: Any) -> str:
            state.calls["elsewhere"] += 1
            return "served"

        @svc.listener("conf.happened", channel=other)
        async def happened(data: Any) -> None:
            state.calls["happened"] += 1

        async with serving(registry, svc) as (node, client):
            assert await client.call("conf.elsewhere") == "served"  # over its own transport
            assert await client.emit("conf.happened", {}, mode="ack") == ["conf"]
            await _forge_channel(
                node, "conf", {"elsewhere": self.channel, "conf.happened": self.channel}
            )
            async with jesus.Client(registry) as fooled:
                with pytest.raises(jesus.WrongChannel, match=f"not served over {self.scheme}"):
                    await fooled.call("conf.elsewhere")
                with pytest.raises(jesus.EventNotDelivered) as refused:
                    await fooled.emit("conf.happened", {}, mode="ack")
                assert isinstance(refused.value.failures["conf"], jesus.WrongChannel)
                assert await fooled.call("conf.add", {"a": 1, "b": 1}) == 2  # still serving
        assert state.calls["elsewhere"] == 1
        assert state.calls["happened"] == 1

    async def test_a_method_may_be_served_over_several_transports(self, registry: str) -> None:
        other = _other_transport(self.scheme, jesus.ResponseMode.RESPONSE)
        if other is None:
            pytest.skip("no other transport is installed")
        svc = jesus.Service("multi")

        @svc.method(channel=[other, self.channel])
        async def hello(data: Any) -> str:
            return "hello"

        async with serving(registry, svc) as (node, client):
            (record,) = await client.resolver.backend.list_instances("multi")
            method = record.methods["hello"]
            assert [jesus.ChannelSpec.parse(c).transport for c in method.channels] == [
                other,
                self.scheme,
            ]
            assert set(record.endpoints) == {other, self.scheme}
            assert await client.call("multi.hello") == "hello"  # the first: other
            await _forge_channel(node, "multi", {"hello": self.channel})
            async with jesus.Client(registry) as second:
                assert await second.call("multi.hello") == "hello"  # and this one

    # ------------------------------------------------------------ 11. who calls

    async def test_the_caller_is_what_the_transport_proves_not_what_it_claims(
        self, registry: str
    ) -> None:
        svc, _ = self.service()
        async with serving(registry, svc, client={"name": "friend"}) as (_, client):
            seen = await client.call("conf.whoami")
            assert seen is not None and seen["name"] is None  # `from` proves nothing
            if self.local:
                assert seen["proof"] == "unix"
                assert seen["uid"] == os.getuid() and seen["pid"] == os.getpid()
            else:
                assert seen["proof"] == "none"
            with pytest.raises(jesus.PermissionDenied, match="anonymous caller"):
                await client.call("conf.guarded")
            assert await client.call("conf.add", {"a": 1, "b": 1}) == 2

    async def test_mutual_tls_proves_the_caller_and_the_allow_list_holds(
        self, registry: str
    ) -> None:
        if not self.tls:
            pytest.skip(f"{self.scheme} does not carry TLS")
        import trustme

        ca = trustme.CA()
        svc, state = self.service()
        async with serving(
            registry,
            svc,
            ssl_context=_server_context(ca, require_client_cert=True),
            client={"ssl_context": _client_context(ca, cert=True, name="friend")},
        ) as (_, friend):
            seen = await friend.call("conf.whoami")
            assert seen["name"] == "friend" and seen["proof"] == "tls"
            assert await friend.call("conf.guarded") == "welcome"
            stranger_tls = _client_context(ca, cert=True, name="stranger")
            async with jesus.Client(registry, ssl_context=stranger_tls, name="friend") as stranger:
                assert (await stranger.call("conf.whoami"))["name"] == "stranger"
                with pytest.raises(jesus.PermissionDenied, match="'stranger' may not call"):
                    await stranger.call("conf.guarded")
        assert state.calls["guarded"] == 1

    # ------------------------------------------------------------ 12. sealed messages

    def sealed_service(self) -> tuple[jesus.Service, State]:
        svc = jesus.Service("safe", channel=self.channel)
        state = State()

        @svc.method(seal="encrypt", allow=["friend"])
        async def secret(data: Any) -> dict[str, Any]:
            state.calls["secret"] += 1
            caller = jesus.current_caller()
            return {"echo": data, "caller": None if caller is None else caller.name}

        @svc.method(seal="sign")
        async def signed(data: Any) -> Any:
            return data

        if jesus.ResponseMode.STREAM in self.modes:

            @svc.method(seal="encrypt", mode="stream")
            async def count(data: int) -> AsyncIterator[int]:
                for i in range(data):
                    yield i

        return svc, state

    async def test_sealed_calls_round_trip_and_prove_their_caller(
        self, registry: str, tmp_path: Path
    ) -> None:
        pki = _pki(tmp_path, "safe", "friend")
        svc, state = self.sealed_service()
        async with serving(registry, svc, tls=pki("safe"), client={"tls": pki("friend")}) as (
            _,
            client,
        ):
            answer = await client.call("safe.secret", {"x": [1, "two"]})
            assert answer == {"echo": {"x": [1, "two"]}, "caller": "friend"}
            assert await client.call("safe.signed", "hello") == "hello"
            if jesus.ResponseMode.STREAM in self.modes:
                assert [i async for i in client.stream("safe.count", 4)] == [0, 1, 2, 3]
        assert state.calls["secret"] == 1

    async def test_a_sealed_method_called_unsealed_is_refused(
        self, registry: str, tmp_path: Path
    ) -> None:
        """A downgrade: the registry says the method is not sealed; the server refuses the
        plain request and its handler does not run."""
        pki = _pki(tmp_path, "safe", "friend")
        svc, state = self.sealed_service()
        async with serving(registry, svc, tls=pki("safe")) as (node, _):
            real = node.records[0]
            methods = {
                **real.methods,
                "secret": dataclasses.replace(real.methods["secret"], seal=None),
            }
            await node.client.resolver.backend.register(
                dataclasses.replace(real, instance_id="forged", methods=methods), 30
            )
            await node.client.resolver.backend.deregister(real.service, real.instance_id)
            async with jesus.Client(registry, tls=pki("friend")) as fooled:
                with pytest.raises(jesus.SealRefused, match="must be sealed"):
                    await fooled.call("safe.secret", 1)
                # The caller's own demand wins over what the registry says.
                answer = await fooled.call("safe.secret", 2, seal="encrypt")
                assert answer == {"echo": 2, "caller": "friend"}
        assert state.calls["secret"] == 1

    # ------------------------------------------------------------ 13. TLS

    async def test_tls(self, registry: str) -> None:
        if not self.tls:
            pytest.skip(f"{self.scheme} does not carry TLS")
        import trustme

        ca = trustme.CA()
        svc, _ = self.service()
        async with serving(
            registry,
            svc,
            ssl_context=_server_context(ca),
            client={"ssl_context": _client_context(ca)},
        ) as (_, client):
            assert await client.call("conf.add", {"a": 1, "b": 2}) == 3
            if jesus.ResponseMode.STREAM in self.modes:
                assert [i async for i in client.stream("conf.count", {"n": 5})] == list(range(5))
            async with jesus.Client(registry, ssl_context=_client_context(trustme.CA())) as other:
                with pytest.raises(jesus.Unavailable):  # the server's CA is not trusted
                    await other.call("conf.add", {"a": 1, "b": 2}, timeout=2)

    async def test_mutual_tls(self, registry: str) -> None:
        if not self.tls:
            pytest.skip(f"{self.scheme} does not carry TLS")
        import trustme

        ca = trustme.CA()
        svc, _ = self.service()
        async with serving(
            registry,
            svc,
            ssl_context=_server_context(ca, require_client_cert=True),
            client={"ssl_context": _client_context(ca, cert=True)},
        ) as (_, client):
            assert await client.call("conf.add", {"a": 2, "b": 2}) == 4
            async with jesus.Client(registry, ssl_context=_client_context(ca)) as no_cert:
                with pytest.raises(jesus.Unavailable):
                    await no_cert.call("conf.add", {"a": 2, "b": 2}, timeout=2)
            assert await client.call("conf.add", {"a": 3, "b": 3}) == 6

    async def test_tls_is_refused_where_not_carried(self, registry: str) -> None:
        """Asking for TLS on a transport without it must fail, never serve in the clear."""
        if self.tls:
            pytest.skip(f"{self.scheme} carries TLS")
        svc, _ = self.service()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        if self.local:  # protected without TLS: it serves
            async with serving(registry, svc, ssl_context=context) as (_, client):
                assert await client.call("conf.add", {"a": 1, "b": 1}) == 2
            return
        with pytest.raises(jesus.ConfigurationError, match="unprotected"):
            async with jesus.serve(svc, registry=registry, ssl_context=context):
                pass


def _server_context(ca: Any, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


def _client_context(ca: Any, cert: bool = False, name: str = "client") -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    if cert:
        ca.issue_cert(f"{name}@jesus", common_name=name).configure_cert(ctx)
    return ctx


def _pki(folder: Path, *names: str) -> Callable[[str], jesus.Credentials]:
    """A development CA in `folder` and a certificate for each name."""
    from jesus.security import devca

    devca.create_ca(folder / "pki")
    for name in names:
        devca.issue(folder / "pki", name)
    return lambda name: devca.credentials(folder / "pki", name)


def _other_transport(scheme: str, mode: jesus.ResponseMode) -> str | None:
    """An installed transport other than `scheme` that carries `mode`, if there is one."""
    transports = default_catalog().transports
    others = sorted(s for s, t in transports.items() if s != scheme and mode in t.modes)
    return others[0] if others else None


async def _forge_channel(node: jesus.Node, service: str, forged: dict[str, str]) -> None:
    """Replace `service`'s record by one that says the methods and listeners named in
    `forged` are served on the channel given: a registry that lies, or a hand-made client."""
    backend = node.client.resolver.backend
    real = next(r for r in node.records if r.service == service)
    methods = dict(real.methods)
    listens = dict(real.listens)
    for name, channel in forged.items():
        if name in methods:
            methods[name] = dataclasses.replace(methods[name], channel=channel, channels=(channel,))
        else:
            listens[name] = {**listens[name], "channel": channel, "channels": [channel]}
    record = dataclasses.replace(real, instance_id="forged", methods=methods, listens=listens)
    await backend.register(record, 30)
    await backend.deregister(real.service, real.instance_id)
