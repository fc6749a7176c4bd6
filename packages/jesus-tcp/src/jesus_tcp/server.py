"""Server side: accept connections, run the handshake, map each frame onto the call runner."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, TaskGroup

from jesus.errors import (
    BadFrame,
    CallError,
    FrameTooLarge,
    RemoteProtocolError,
    TooLarge,
    Unavailable,
)
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.transport import (
    BROKEN,
    CallHandler,
    CallRunner,
    Session,
    TransportOptions,
    peer_of,
    stop_reading_ahead,
)
from jesus.transport.feed import Feed, feed
from jesus.transport.futures import clock_factory
from jesus.transport.server_events import PROVIDE, handle_server_event
from jesus.transport.writer import FrameWriter
from jesus_tcp.client import ClientConnection

log = logging.getLogger("jesus.tcp.server")
_NO_RESPONSE = ResponseMode.NO_RESPONSE

READ_SIZE = 65536


class StreamServer:
    """Serves the jesus protocol on an anyio listener (TCP, TLS or unix)."""

    def __init__(
        self,
        listener: Listener[Any],
        endpoint: str,
        handler: CallHandler,
        options: TransportOptions,
    ) -> None:
        self.endpoint = endpoint
        self._listener = listener
        self._options = options
        self.runner = CallRunner(handler, options.limits)
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._stopped = anyio.Event()
        self._serving = False
        self.refused_connections = 0

    async def serve(self) -> None:
        if self._closing:
            return  # closed before it started serving: the listener is closed already
        self._serving = True
        try:
            async with anyio.create_task_group() as tg:
                self.runner.bind(tg)
                tg.start_soon(self._accept_loop, tg)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.runner.aclose()
                await self._listener.aclose()

    async def _accept_loop(self, tg: TaskGroup) -> None:
        await self._listener.serve(self._handle, task_group=tg)

    async def _handle(self, stream: ByteStream) -> None:
        limits = self._options.limits
        if self._closing or len(self._connections) >= limits.max_connections:
            self.refused_connections += 1
            await _refuse(stream, limits)
            return
        conn = ServerConnection(stream, self.runner.session(peer_of(stream)), self._options)
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception:
            # One connection's failure must never take the server down.
            log.exception("connection failed")
        finally:
            self._connections.discard(conn)

    async def aclose(self) -> None:
        """Stop accepting, tell clients to go away, let in-flight calls finish."""
        if self._closing:
            return
        self._closing = True
        for conn in list(self._connections):
            conn.goaway("server shutting down")
        await self.runner.drain()
        for conn in list(self._connections):
            with anyio.move_on_after(1):
                await conn.writer.flush()  # the last answers
            conn.close()
        self._stopped.set()
        if not self._serving:
            await self._listener.aclose()


async def _refuse(stream: ByteStream, limits: Limits) -> None:
    proto = ProtocolConnection(Role.SERVER, limits)
    error = Unavailable(f"server is at max_connections ({limits.max_connections})")
    with anyio.move_on_after(1):
        try:
            await stream.send(proto.send_error(0, error))
        except BROKEN:
            pass
    await stream.aclose()


class ServerConnection:
    """One client connection: frames in, events onto the session, answers out."""

    def __init__(
        self,
        stream: ByteStream,
        session: Session,
        options: TransportOptions,
        offer: dict[str, Any] | None = None,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        """`offer`: this end opened the connection and offers services on it (PROTOCOL.md,
        "Node daemon"), so it says HELLO first, with these keys added; `on_open` is called
        once the peer answered with its HELLO, and a refusal instead is kept in `refusal`."""
        self.stream = stream
        self.session = session
        self.limits = options.limits
        self.proto = ProtocolConnection(
            Role.SERVER,
            options.limits,
            codecs=dict(options.codecs),
            compressions=dict(options.compressions),
        )
        self.writer = FrameWriter(stream, options.limits.write_buffer_size)
        self._scope: anyio.CancelScope | None = None
        self._clock = clock_factory()
        self._progress = 0.0  # when the read loop last got through a read
        # While reads are fed (see _on_data): what a read left to the reader task.
        self._fed: Feed | None = None
        self._turn = anyio.Event()
        self._rest: list[ev.Event] = []
        self._failure: Exception | None = None
        self._ended = False
        self._options = options
        self._provider = False
        self._offer = offer
        self._on_open = on_open
        self.refusal: CallError | None = None

    def goaway(self, reason: str) -> None:
        if not self._provider:  # this end is the client of a provider's connection
            self.writer.write(self.proto.send_goaway(reason))

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self.writer.run, tg.cancel_scope.cancel)
                try:
                    await self._read_loop(tg)
                finally:
                    self.session.close()  # the peer is gone: its calls have nowhere to answer
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _read_loop(self, tg: TaskGroup) -> None:
        proto = self.proto
        try:
            await self._handshake()
            if PROVIDE in proto.peer_info:
                await self._provide(tg)
                return
            idle = self.limits.keepalive_interval * 3
            if math.isfinite(idle):
                tg.start_soon(self._watchdog, idle)
            fed = feed(self.stream, self._on_data, self._on_end)
            if fed is not None:
                await self._serve_fed(fed)
            else:
                while True:
                    await self._receive()
                    self._progress = self._clock()
        except RemoteProtocolError as exc:
            log.warning("protocol error from peer, closing its connection: %s", exc)
            error = TooLarge(str(exc)) if isinstance(exc, FrameTooLarge) else BadFrame(str(exc))
            self.writer.end(proto.send_error(0, error))
            with anyio.move_on_after(1, shield=True):
                await self.writer.flush()
        except TimeoutError:
            log.info("closing a connection that did not complete its handshake in time")
        except BROKEN:
            pass

    async def _provide(self, tg: TaskGroup) -> None:
        """The peer offers services (PROTOCOL.md, "Node daemon"): the handler serves them,
        and this end becomes the client of the calls on this connection."""
        self._provider = True
        provide = getattr(self.session.runner.handler, "provide", None)
        link = _ProviderLink(self, tg)
        try:
            if provide is None:
                raise Unavailable("this server does not take providers")
            await provide(dict(self.proto.peer_info), link, self.session.caller)
            return
        except CallError as exc:
            refusal = exc
        except Exception as exc:  # one provider's failure must never take the server down
            log.exception("failed to serve a provider")
            refusal = Unavailable(f"the provider could not be served: {exc}")
        if link.accepted is None:
            log.info("refused a provider: %s", refusal)
            self.writer.end(self.proto.send_error(0, refusal))
            with anyio.move_on_after(1, shield=True):
                await self.writer.flush()

    async def _watchdog(self, idle: float) -> None:
        """Drop a peer silent this long, or not reading its answers this long (the read loop
        then waits in `drain`). One timer per connection, not a cancel scope per read."""
        self._progress = self._clock()
        while True:
            await anyio.sleep(idle / 4)
            if self._clock() - self._progress >= idle:
                log.info("closing idle or silent connection")
                self.close()
                return

    # ------------------------------------------------------------------ reading

    async def _handshake(self) -> None:
        proto = self.proto
        if self._offer is not None:
            await self.stream.send(proto.send_hello(self._offer))
        with anyio.fail_after(self.limits.handshake_timeout):
            while proto.peer_info == {}:
                events = proto.receive_data(await self.stream.receive(READ_SIZE))
                if events and type(events[0]) is ev.ErrorReceived:
                    self.refusal = events[0].error
                    raise anyio.EndOfStream
                await self._handle(events)
        if self._on_open is not None:
            self._on_open()

    async def _receive(self) -> None:
        """One read, on the reader task (trio, TLS and unix throughout)."""
        await self._handle(self.proto.receive_data(await self.stream.receive(READ_SIZE)))

    async def _handle(self, events: list[ev.Event]) -> None:
        rest = self._take(events)
        if rest or self.writer.full:
            await self._catch_up(rest, lambda: stop_reading_ahead(self.stream))

    def _on_data(self, data: bytes) -> None:
        """One read, fed by the event loop's read callback (`jesus.transport.feed`): what
        cannot be done here is left to the reader task, and reading pauses meanwhile."""
        self._progress = self._clock()
        try:
            self._rest = self._take(self.proto.receive_data(data))
        except Exception as exc:  # raised on the reader task, which ends the connection
            self._failure = exc
        if self._rest or self._failure is not None or self.writer.full:
            if self._fed is not None:
                self._fed.pause()
            self._turn.set()  # (before `feed` returned: _serve_fed pauses on seeing it set)

    def _on_end(self) -> None:
        self._ended = True
        self._turn.set()

    async def _serve_fed(self, fed: Feed) -> None:
        """The reader task while reads are fed: it waits for what a read left to it."""
        self._fed = fed
        if self._turn.is_set():
            fed.pause()  # what anyio had read before the feed left work to this task
        while True:
            await self._turn.wait()
            self._turn = anyio.Event()
            if self._failure is not None:
                raise self._failure
            if self._ended:
                raise anyio.EndOfStream
            rest, self._rest = self._rest, []
            await self._catch_up(rest, lambda: None)
            fed.resume()

    def _take(self, events: list[ev.Event]) -> list[ev.Event]:
        """Hand a read's events to the session, up to the first that must wait: a request to
        decode in a worker thread, or a noResponse call while the session is full (refused,
        it would be lost). Returns that one and those after it."""
        session, proto, writer = self.session, self.proto, self.writer
        for i, event in enumerate(events):
            kind = type(event)
            if kind is ev.HeavyRequestReceived or (
                kind is ev.RequestReceived
                and event.mode is _NO_RESPONSE  # type: ignore[union-attr]
                and session.full
            ):
                return events[i:]
            handle_server_event(event, session, proto, writer)  # _on_event, inline: per request
        return []

    async def _catch_up(self, rest: list[ev.Event], stop_reading: Callable[[], None]) -> None:
        """What a read left to the reader task, with reading stopped: heavy requests decoded
        in a worker thread and noResponse calls waiting for room (this peer's later frames
        wait, so they stay in order), then the wait for the peer to read the answers queued
        so far (back-pressure)."""
        proto = self.proto
        while rest:
            stop_reading()
            waiting = rest[0]
            if type(waiting) is ev.RequestReceived:
                await self.session.room()
                self._progress = self._clock()  # waiting on our own calls, not on the peer
                self._on_event(waiting)
                del waiting
                rest = self._take(rest[1:])
                continue
            heavy: ev.HeavyRequestReceived = waiting  # type: ignore[assignment]
            del waiting
            # Handed on, not kept: a refused request's decoded value must go before the next.
            self._on_event(
                await self.session.runner.offload(
                    proto.decode_request,
                    heavy.stream_id,
                    heavy.mode,
                    heavy.flags,
                    heavy.payload,
                    False,
                )
            )
            rest = self._take(rest[1:])
        if self.writer.full:
            stop_reading()
            await self.writer.drain()

    def _on_event(self, event: ev.Event) -> None:
        handle_server_event(event, self.session, self.proto, self.writer)


class _ProviderLink:
    """A provider's connection, handed over: accepting it answers its HELLO with this end's
    own, as the client of the calls that now go to it."""

    def __init__(self, conn: ServerConnection, tg: TaskGroup) -> None:
        self._conn = conn
        self._tg = tg
        self.accepted: ClientConnection | None = None

    async def accept(self) -> ClientConnection:
        conn = self._conn
        proto = conn.proto
        client = ClientConnection(conn.stream, proto.codec, proto.compression, conn._options)
        await self._tg.start(partial(client.run, server_hello=proto.peer_info))
        self.accepted = client
        return client
