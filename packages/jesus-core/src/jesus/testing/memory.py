"""The network and the registry in memory, for `jesus.testing.TestClient`.

`in_memory(catalog, network)` is the catalog with every installed transport replaced by a
`MemoryTransport` under the same scheme, declaring the same modes, TLS and locality, so that
serve() refuses what it would refuse and each method is served only where it is declared.
A call crosses no socket, yet goes the whole real way: the client plans and checks it, its
envelope is encoded with the channel's codec and compression under the limits, and on the
server the transport toolkit's CallRunner admits it and the dispatcher checks and runs it,
as on every transport. Records go through JSON, as through every registry.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from jesus.errors import CallError, ConnectionLost, InvalidRequest, TooLarge, Unavailable
from jesus.errors import error_from_wire as _error_from_wire
from jesus.limits import Limits, check_message_size
from jesus.messages import ResponseMode
from jesus.payload import decode_payload
from jesus.plugins import Catalog
from jesus.registry.base import InstanceRecord
from jesus.security.caller import ANONYMOUS, Caller
from jesus.transport import CallHandler, CallRunner, OutgoingCall, Session, TransportOptions
from jesus.transport.traffic import UNCOUNTED

__all__ = ["MemoryRegistry", "MemoryTransport", "Network", "in_memory"]

_RESPONSE = ResponseMode.RESPONSE
_STREAM = ResponseMode.STREAM
_NO_RESPONSE = ResponseMode.NO_RESPONSE


class Network:
    """Where the in-memory servers of one TestClient listen, and its registry's records."""

    def __init__(self) -> None:
        self.servers: dict[str, MemoryServer] = {}
        self.records: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)

    def endpoint(self, scheme: str) -> str:
        return f"{scheme}://memory/{next(self._ids)}"

    def registry(self, url: str) -> MemoryRegistry:
        return MemoryRegistry(url, self.records)


def in_memory(catalog: Catalog, network: Network, caller: Caller = ANONYMOUS) -> Catalog:
    """`catalog` with its transports in memory on `network` (calls made through it come
    from `caller`, as a transport would prove them) and the registry scheme `memory`."""
    transports = {
        scheme: MemoryTransport(real, network, caller)
        for scheme, real in catalog.transports.items()
    }
    registries = {**catalog.registries, "memory": network.registry}
    return dataclasses.replace(catalog, transports=transports, registries=registries)


class MemoryRegistry:
    """`memory://NAME`: records kept by the Network, as JSON text, with their TTL."""

    def __init__(self, url: str, records: dict[tuple[str, str], str]) -> None:
        self.url = url
        self._records = records

    async def register(self, record: InstanceRecord, ttl: float) -> None:
        raw = record.to_json()
        raw["expires_at"] = time.time() + ttl
        self._records[record.service, record.instance_id] = json.dumps(raw)
        await anyio.lowlevel.checkpoint()

    async def deregister(self, service: str, instance_id: str) -> None:
        self._records.pop((service, instance_id), None)
        await anyio.lowlevel.checkpoint()

    async def is_registered(self, service: str, instance_id: str) -> bool:
        await anyio.lowlevel.checkpoint()
        return (service, instance_id) in self._records

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        await anyio.lowlevel.checkpoint()
        now = time.time()
        found = []
        for (name, _), text in list(self._records.items()):
            raw = json.loads(text)
            if (service is None or name == service) and raw["expires_at"] > now:
                found.append(InstanceRecord.from_json(raw))
        return found

    async def aclose(self) -> None:
        pass


class _Wire:
    """A value as a transport carries it: the codec's bytes, compressed when that pays,
    within max_message_size; and back, under every decode limit."""

    def __init__(self, channel: Any, limits: Limits, max_size: int | None = None) -> None:
        self.codec = channel.codec
        self.compression = channel.compression
        self.limits = limits
        self.max_size = limits.max_message_size if max_size is None else max_size
        self._compress = channel.compression.name != "none"

    def pack(self, value: Any) -> tuple[bytes, bool]:
        """Raises ValueError (cannot be encoded) or TooLarge."""
        payload = self.codec.encode(value)
        compressed = False
        if self._compress and len(payload) >= self.limits.compress_threshold:
            squeezed = self.compression.compress(payload)
            if len(squeezed) < len(payload):
                payload, compressed = squeezed, True
        check_message_size(len(payload), self.max_size)
        return payload, compressed

    def unpack(self, packed: tuple[bytes, bool]) -> tuple[Any, int]:
        payload, compressed = packed
        check_message_size(len(payload), self.limits.max_message_size)
        return decode_payload(self.codec, self.compression, payload, compressed, self.limits, False)


class MemoryTransport:
    """A transport in memory standing for `real`: its scheme, modes, TLS and locality."""

    def __init__(self, real: Any, network: Network, caller: Caller = ANONYMOUS) -> None:
        self.real = real
        self.scheme: str = real.scheme
        self.modes: frozenset[ResponseMode] = real.modes
        self.tls: bool = real.tls
        self.local: bool = real.local
        self.network = network
        self.caller = caller

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> MemoryServer:
        server = MemoryServer(self.network.endpoint(self.scheme), handler, options, self.modes)
        self.network.servers[server.endpoint] = server
        await anyio.lowlevel.checkpoint()
        return server

    def client(self, options: TransportOptions, task_group: TaskGroup) -> MemoryClient:
        return MemoryClient(self.network, options, self.caller)


class MemoryServer:
    def __init__(
        self,
        endpoint: str,
        handler: CallHandler,
        options: TransportOptions,
        modes: frozenset[ResponseMode],
    ) -> None:
        self.endpoint = endpoint
        self.options = options
        self.runner = CallRunner(handler, options.limits, modes)
        self.ready = anyio.Event()  # the runner is bound: calls can be admitted
        self._stopped = anyio.Event()

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.runner.bind(tg)
                self.ready.set()
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.runner.aclose()

    async def aclose(self) -> None:
        """Refuse new calls, let those in flight finish (a second call: stop now)."""
        if self.runner.closing:
            self._stopped.set()
            return
        await self.runner.drain()
        self._stopped.set()


class MemoryReply:
    """One call's answers, on their way back to the waiting client: stream items through a
    channel bounded by the stream window, then the final outcome."""

    __slots__ = ("_items", "final", "meter", "open", "received", "wire")
    always_answers: ClassVar[bool] = False

    def __init__(self, wire: _Wire, window: int) -> None:
        self.wire = wire
        self.open = True
        self.meter = UNCOUNTED  # nothing goes over a wire here
        self.final: tuple[str, Any] | None = None
        self._items: MemoryObjectSendStream[tuple[bytes, bool]]
        self.received: MemoryObjectReceiveStream[tuple[bytes, bool]]
        self._items, self.received = anyio.create_memory_object_stream(window)

    def _settle(self, outcome: tuple[str, Any]) -> None:
        self.open = False
        if self.final is None:
            self.final = outcome
        self._items.close()

    def ack(self) -> None:
        self._settle(("ack", None))

    def result(self, value: Any) -> None:
        self._settle(("result", self.wire.pack(value)))

    def error(self, error: CallError) -> None:
        self._settle(("error", json.dumps(error.to_wire())))

    def item(self, value: Any) -> Awaitable[None] | None:
        packed = self.wire.pack(value)
        try:
            self._items.send_nowait(packed)
        except anyio.WouldBlock:
            return self._send(packed)  # no credit left: wait for the consumer
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.open = False  # the consumer left
        return None

    async def _send(self, packed: tuple[bytes, bool]) -> None:
        try:
            await self._items.send(packed)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.open = False

    def end(self) -> None:
        self._settle(("end", None))

    def close(self) -> None:
        self.open = False
        self._items.close()


class MemoryClient:
    """Calls to the Network's servers; one session per server, as a connection would be."""

    stream_deadlines: ClassVar[bool] = False

    def __init__(self, network: Network, options: TransportOptions, caller: Caller) -> None:
        self.network = network
        self.options = options
        self.caller = caller
        self._sessions: dict[str, Session] = {}
        self._keys = itertools.count(1)

    async def _send(self, call: OutgoingCall) -> tuple[Session, int, MemoryReply]:
        server = self.network.servers.get(call.endpoint)
        if server is None:
            raise Unavailable(f"nothing listens at {call.endpoint}", corrid=call.meta.corrid)
        await server.ready.wait()
        session = self._sessions.get(call.endpoint)
        if session is None:
            session = self._sessions[call.endpoint] = server.runner.session(self.caller)
        # A connection's handshake tells the client the server's limit: it refuses first.
        limit = min(self.options.limits.max_message_size, server.options.limits.max_message_size)
        try:
            packed = _Wire(call.channel, self.options.limits, limit).pack(
                [call.target, call.meta.to_wire(), call.data]
            )
        except TooLarge as exc:
            exc.corrid = call.meta.corrid
            raise
        except ValueError as exc:
            raise InvalidRequest(str(exc), corrid=call.meta.corrid) from None
        server_wire = _Wire(call.channel, server.options.limits)
        window = server.options.limits.stream_window if call.mode is _STREAM else 0
        reply = MemoryReply(server_wire, window)
        key = next(self._keys)
        if call.mode is _NO_RESPONSE:
            await session.room()  # as a stream transport stops reading until there is room
        try:
            (method, raw_meta, data), size = server_wire.unpack(packed)
        except CallError as exc:
            session.refuse(call.target, call.mode, reply, exc)
        else:
            session.admit(key, method, raw_meta, data, call.mode, reply, size)
        return session, key, reply

    async def request(self, call: OutgoingCall) -> Any:
        session, key, reply = await self._send(call)
        if call.mode is _NO_RESPONSE:
            await anyio.lowlevel.checkpoint()
            return None
        try:
            async for _ in reply.received:
                pass  # no items for a call that is not a stream
            return self._outcome(call, reply)
        finally:
            if reply.open:  # the caller gave up first
                session.cancel(key)
            reply.received.close()

    async def stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        session, key, reply = await self._send(call)
        wire = _Wire(call.channel, self.options.limits)
        try:
            async for packed in reply.received:
                yield wire.unpack(packed)[0]
            self._outcome(call, reply)
        finally:
            if reply.open:  # left the loop early, or cancelled
                session.cancel(key)
            reply.received.close()

    def _outcome(self, call: OutgoingCall, reply: MemoryReply) -> Any:
        final = reply.final
        if final is None:
            raise ConnectionLost(
                f"{call.target}: the server ended the call without an answer",
                corrid=call.meta.corrid,
            )
        kind, value = final
        if kind == "error":
            raise _error_from_wire(json.loads(value), call.meta.corrid)
        if kind == "result":
            return _Wire(call.channel, self.options.limits).unpack(value)[0]
        return None

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for session in sessions.values():
            session.close()
