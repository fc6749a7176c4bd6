"""Client side: one multiplexed connection per (endpoint, codec, compression), answers matched
to their calls by stream id in the reader, without a task per call."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskGroup, TaskStatus

from jesus.errors import (
    CallError,
    ConnectionLost,
    InvalidRequest,
    ProtocolError,
    TooLarge,
    Unavailable,
)
from jesus.messages import ResponseMode
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.protocol.frames import HEADER_SIZE
from jesus.transport import BROKEN, OutgoingCall, TransportOptions, connect_errors, unreachable
from jesus.transport.answers import Answers
from jesus.transport.feed import Feed, feed
from jesus.transport.futures import clock_factory
from jesus.transport.pacing import Pacer
from jesus.transport.pool import ConnectionPool
from jesus.transport.writer import FrameWriter

log = logging.getLogger("jesus.tcp.client")

READ_SIZE = 65536
Connector = Callable[[str], Awaitable[ByteStream]]
_NO_RESPONSE = ResponseMode.NO_RESPONSE


class ClientConnection:
    def __init__(
        self, stream: ByteStream, codec: Any, compression: Any, options: TransportOptions
    ) -> None:
        self.stream = stream
        self.limits = options.limits
        self.proto = ProtocolConnection(
            Role.CLIENT, self.limits, codec=codec, compression=compression
        )
        self.writer = FrameWriter(stream, self.limits.write_buffer_size)
        self.answers = Answers(self.proto, self.limits, self.writer.write)
        self.closed = False
        self.draining = False
        self._clock = clock_factory()
        self._last_seen = self._clock()
        self._scope: anyio.CancelScope | None = None
        self._ended = anyio.Event()  # the server closed, or broke the protocol
        self._fed: Feed | None = None
        self._pacer = Pacer()  # a run of noResponse calls on this connection
        # Calls in flight the server accepts on this connection (from its HELLO).
        self.max_inflight = self.limits.max_inflight_calls
        self._done = anyio.Event()  # run() returned: the connection is closed

    @property
    def usable(self) -> bool:
        return not self.closed and not self.draining and not self.writer.closed

    async def run(
        self,
        *,
        server_hello: dict[str, Any] | None = None,
        task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Handshake, then read until the connection ends. Given `server_hello`, the peer
        said HELLO first (a provider, whose HELLO the server read before handing the
        connection over): this end only answers it."""
        try:
            # Before any task starts, so a refusal reaches the caller as itself, ungrouped.
            if server_hello is None:
                await self._handshake()
            else:
                await self.stream.send(self.proto.send_hello())
                self._hello(self.proto.received_hello(server_hello))
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self.writer.run, tg.cancel_scope.cancel)
                task_status.started()
                tg.start_soon(self._keepalive)
                tg.start_soon(self.answers.expire_deadlines)
                await self._read_loop()
                tg.cancel_scope.cancel()
        finally:
            self._fail_all(ConnectionLost("connection to the server was lost"))
            self._done.set()
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def wait_closed(self) -> None:
        await self._done.wait()

    async def _handshake(self) -> None:
        try:
            with anyio.fail_after(self.limits.handshake_timeout):
                await self.stream.send(self.proto.send_hello())
                while True:
                    data = await self.stream.receive(READ_SIZE)
                    for event in self.proto.receive_data(data):
                        if type(event) is ev.HelloReceived:
                            self._hello(event)
                            return
                        if type(event) is ev.ErrorReceived:
                            error = event.error
                            if not isinstance(error, Unavailable):
                                error = Unavailable(
                                    f"server refused the handshake: {error.message}"
                                )
                            raise error
        except TimeoutError:
            raise Unavailable("server did not complete the handshake in time") from None
        except ProtocolError as exc:
            raise Unavailable(f"server broke the handshake: {exc}") from None
        except BROKEN as exc:
            raise unreachable("server closed the connection during the handshake", exc) from None

    def _hello(self, event: ev.HelloReceived) -> None:
        announced = event.info.get("max_inflight_calls")
        if isinstance(announced, int) and announced > 0:
            self.max_inflight = announced

    async def _read_loop(self) -> None:
        self._fed = feed(self.stream, self._on_data, self._ended.set)
        if self._fed is not None:
            await self._ended.wait()  # reads are fed to _on_data meanwhile
            return
        proto = self.proto
        try:
            while True:
                data = await self.stream.receive(READ_SIZE)
                self._last_seen = self._clock()
                for event in self.answers.on_events(proto.receive_data(data)):
                    self._on_event(event)
        except ProtocolError as exc:
            log.warning("server broke the protocol, dropping the connection: %s", exc)
        except BROKEN:
            pass

    def _on_data(self, data: bytes) -> None:
        """One read, fed by the event loop's read callback (`jesus.transport.feed`)."""
        self._last_seen = self._clock()
        try:
            for event in self.answers.on_events(self.proto.receive_data(data)):
                self._on_event(event)
        except ProtocolError as exc:
            log.warning("server broke the protocol, dropping the connection: %s", exc)
            self._stop_feed()
        except Exception:
            log.exception("failed to handle what the server sent; dropping the connection")
            self._stop_feed()

    def _stop_feed(self) -> None:
        if self._fed is not None:
            self._fed.pause()
        self._ended.set()

    def _on_event(self, event: ev.Event) -> None:
        """What is not an answer to a call (`Answers.on_events` took those)."""
        kind = type(event)
        if kind is ev.ErrorReceived:
            error = event.error  # type: ignore[union-attr]
            log.warning("server closed the connection: %s", error)
            self._fail_all(ConnectionLost(f"server closed the connection: {error.message}"))
        elif kind is ev.GoAwayReceived:
            self.draining = True
        elif kind is ev.PingReceived:
            self.writer.write(self.proto.send_pong(event.payload))  # type: ignore[union-attr]

    def _fail_all(self, error: CallError) -> None:
        self.closed = True
        self.answers.fail_all(error)

    async def _keepalive(self) -> None:
        """Ping once the server has been silent for `keepalive_interval` (so the server,
        which drops peers silent for three intervals, hears from us), and drop a server
        silent for three intervals: it is gone."""
        interval = self.limits.keepalive_interval
        if not math.isfinite(interval):
            return
        while True:
            await anyio.sleep(interval / 2)
            silent = anyio.current_time() - self._last_seen
            if silent >= 3 * interval:
                log.warning("server silent for %.1fs, dropping the connection", silent)
                self.close()
                return
            if silent >= interval:
                self.writer.write(self.proto.send_ping(os.urandom(8)))

    def close(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def finish(self) -> None:
        try:
            await self.writer.flush()
        finally:
            self.close()

    # ------------------------------------------------------------------ calls

    def _open(self, call: OutgoingCall, mode: ResponseMode) -> tuple[int, bytes]:
        meta = call.meta
        answers = self.answers
        if len(answers.calls) + len(answers.streams) >= self.max_inflight:
            raise Unavailable("too many calls in flight on this connection", corrid=meta.corrid)
        try:
            return self.proto.send_request(call.target, meta.to_wire(), call.data, mode)
        except TooLarge as exc:
            exc.corrid = meta.corrid
            raise
        except ValueError as exc:
            raise InvalidRequest(str(exc), corrid=meta.corrid) from None

    async def request(self, call: OutgoingCall) -> Any:
        mode, meta = call.mode, call.meta
        sid, frame = self._open(call, mode)
        meter = call.meter()
        meter.sent += len(frame) - HEADER_SIZE
        if mode is _NO_RESPONSE:
            self.writer.write(frame)
            if self.writer.full:
                await self.writer.drain()
            else:
                await self._pacer.step()
            return None
        answers = self.answers
        future = answers.expect(sid, call.deadline)
        self.writer.write(frame)
        try:
            answer = await future
        except CallError as exc:
            if exc.corrid is None:
                exc.corrid = meta.corrid
            raise
        finally:
            answers.settle(sid, future)
        if answer is None:  # acked
            return None
        meter.received += answer.size
        return answer.value

    def open_stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        return self.answers.stream(
            lambda: self._open(call, ResponseMode.STREAM),
            self.writer.write,
            call.deadline,
            call.meta.corrid,
            call.meter(),
        )


class StreamClient(ConnectionPool):
    """The TransportClient of the tcp and unix transports: a pool of multiplexed connections."""

    def __init__(
        self, connect: Connector, options: TransportOptions, task_group: TaskGroup
    ) -> None:
        super().__init__(task_group)
        self._connect = connect
        self._options = options

    async def connect(self, call: OutgoingCall, task_group: TaskGroup) -> ClientConnection:
        with connect_errors(call.endpoint):
            stream = await self._connect(call.endpoint)
        conn = ClientConnection(stream, call.codec, call.compression, self._options)
        await task_group.start(conn.run)
        return conn
