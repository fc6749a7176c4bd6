"""Client side: one DEALER socket per (endpoint, channel) is one connection of the protocol
(its HELLO fixes the codec and compression); answers are matched to calls by stream id."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

import zmq
from jesus.errors import (
    CallError,
    ConfigurationError,
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
from jesus.transport import OutgoingCall, TransportOptions
from jesus.transport.answers import Answers
from jesus.transport.keys import KeyRefused, TransportKeys, Vouched
from jesus.transport.pool import ConnectionPool
from jesus_zmq.addresses import server_key, zmq_address
from jesus_zmq.curve import HANDSHAKE_FAILED, WHY, connect_curve, server_of
from jesus_zmq.monitor import GONE, REFUSED, Monitor
from jesus_zmq.peer import one_frame
from jesus_zmq.pump import SocketPump

log = logging.getLogger("jesus.zmq.client")


class ZmqConnection:
    """One DEALER: a CURVE client of `server` (its public key) given one, with `keys`."""

    def __init__(
        self,
        address: str,
        codec: Any,
        compression: Any,
        options: TransportOptions,
        server: bytes | None = None,
    ):
        from jesus_zmq.transport import new_socket

        self.limits = options.limits
        self.proto = ProtocolConnection(
            Role.CLIENT, self.limits, codec=codec, compression=compression
        )
        self.sock = new_socket(zmq.DEALER, options)
        # Messages go only to a connection that is up: a send fails at once instead of
        # queueing for a server that is not there.
        self.sock.setsockopt(zmq.IMMEDIATE, 1)
        self._keys: TransportKeys | None = None
        self._server = server
        self.vouched: Vouched | None = None  # whom the server's certificate names
        self._monitor = Monitor(self.sock, GONE | REFUSED | HANDSHAKE_FAILED)
        try:
            if server is not None:
                assert options.keys is not None
                self._keys = options.keys
                connect_curve(self.sock, self._keys, server)
            self.sock.connect(address)
        except BaseException:
            self._monitor.close()
            self.sock.close(linger=0)
            raise
        self.pump = SocketPump(self.sock, self._on_message)
        self.pump.copy = server is None  # the first answer's frame carries the server's proof
        self.answers = Answers(self.proto, self.limits, self.write)
        self.closed = False
        self.draining = False
        self._hello = self.answers.new_future()
        self._refused: str | None = None  # why connecting failed, as libzmq reported it
        self._last_seen = anyio.current_time()
        self._scope: anyio.CancelScope | None = None
        self.max_inflight = self.limits.max_inflight_calls

    @property
    def usable(self) -> bool:
        return not self.closed and not self.draining

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        refused: Unavailable | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self.pump.run)
                tg.start_soon(self._monitor.watch, self._on_monitor)
                try:
                    await self._handshake()
                except Unavailable as exc:  # raised alone, not in a group, to the caller
                    refused = exc
                    tg.cancel_scope.cancel()
                else:
                    tg.start_soon(self.answers.expire_deadlines)
                    task_status.started()
                    await self._keepalive()
                    tg.cancel_scope.cancel()
            if refused is not None:
                raise refused
        finally:
            self._fail_all(ConnectionLost("connection to the server was lost"))
            self._monitor.close()  # when the task group was cancelled before it watched
            self.sock.close(linger=0)

    async def _handshake(self) -> None:
        hello = self.proto.send_hello()
        with anyio.move_on_after(self.limits.handshake_timeout):
            while not self.pump.send([hello]):
                if self._refused is not None:
                    raise Unavailable(self._refused)
                await self.pump.writable()
            hello = b""
        if hello:
            raise Unavailable("the server cannot be reached (no connection came up)")
        try:
            with anyio.fail_after(self.limits.handshake_timeout):
                await self._hello
        except TimeoutError:
            raise Unavailable("server did not complete the handshake in time") from None
        except KeyRefused as exc:
            raise Unavailable(f"the server did not prove its CURVE key: {exc}") from None
        except CallError as exc:
            raise Unavailable(f"server refused the handshake: {exc.message}") from None

    def _on_monitor(self, event: int) -> None:
        if not self._hello.done():
            # Connecting: libzmq retries a refused or closed connect for ever, we do not.
            # A failed handshake says why; a closed or retried connect only that it failed.
            self._refused = WHY.get(event) or self._refused or "the server refused the connection"
            return
        if event & GONE:
            log.warning("lost the connection to the server")
            self.close()

    async def _keepalive(self) -> None:
        """Ping a server silent for `keepalive_interval`; drop one silent for three."""
        interval = self.limits.keepalive_interval
        if not math.isfinite(interval):
            await anyio.sleep_forever()
        while True:
            await anyio.sleep(interval / 2)
            silent = anyio.current_time() - self._last_seen
            if silent >= 3 * interval:
                log.warning("server silent for %.1fs, dropping the connection", silent)
                return
            if silent >= interval:
                self.write(self.proto.send_ping(os.urandom(8)))

    def close(self) -> None:
        self.closed = True
        if self._scope is not None:
            self._scope.cancel()

    async def finish(self) -> None:
        self.close()  # nothing waits on this side: what was written is libzmq's

    # ------------------------------------------------------------------ reading

    def _on_message(self, parts: list[Any]) -> None:
        if not self.pump.copy:
            parts = self._vouch(parts)
            if not parts:
                return
        self._last_seen = anyio.current_time()
        try:
            if len(parts) != 1:
                raise ProtocolError(f"a {len(parts)}-part message (one frame per message)")
            one_frame(parts[0])
            for event in self.proto.receive_data(parts[0]):
                self._on_event(event)
        except ProtocolError as exc:
            log.warning("server broke the protocol, dropping the connection: %s", exc)
            self._fail_all(ConnectionLost(f"server broke the protocol: {exc}"))
            self.close()

    def _vouch(self, frames: list[zmq.Frame]) -> list[bytes]:
        """The first message of a CURVE server, once its certificate proved its key: read
        nothing from a server until then."""
        assert self._keys is not None and self._server is not None
        try:
            self.vouched = server_of(frames[-1], self._keys, self._server)
        except KeyRefused as exc:
            if not self._hello.done():
                self._hello.set_exception(exc)
            return []
        self.pump.copy = True
        return [frame.bytes for frame in frames]

    def _on_event(self, event: ev.Event) -> None:
        if self.answers.on_event(event):
            return
        kind = type(event)
        if kind is ev.ErrorReceived:
            error = event.error  # type: ignore[union-attr]
            if not self._hello.done():
                self._hello.set_exception(error)
                return
            log.warning("server closed the connection: %s", error)
            self._fail_all(ConnectionLost(f"server closed the connection: {error.message}"))
            self.close()
        elif kind is ev.HelloReceived:
            announced = event.info.get("max_inflight_calls")  # type: ignore[union-attr]
            if isinstance(announced, int) and announced > 0:
                self.max_inflight = announced
            self._hello.set_result(None)
        elif kind is ev.GoAwayReceived:
            self.draining = True
        elif kind is ev.PingReceived:
            self.write(self.proto.send_pong(event.payload))  # type: ignore[union-attr]

    def _fail_all(self, error: CallError) -> None:
        self.closed = True
        self.answers.fail_all(error)

    # ------------------------------------------------------------------ writing

    def write(self, frame: bytes) -> None:
        """Control frames (PING, PONG, CANCEL, CREDIT): dropped with the connection when the
        pipe is full, which means the server stopped reading."""
        if not self.closed and not self.pump.send([frame]):
            log.warning("the server does not read: dropping the connection")
            self.close()

    async def _send(self, frame: bytes, answer: Any = None) -> None:
        """Send a request, waiting while the pipe is full (not past the `answer`, which the
        call's deadline may fail meanwhile)."""
        while not self.pump.send([frame]):
            if self.closed:
                raise ConnectionLost("connection to the server was lost")
            if answer is not None and answer.done():
                return
            await self.pump.writable()

    # ------------------------------------------------------------------ calls

    def _open(self, call: OutgoingCall, mode: ResponseMode) -> tuple[int, bytes]:
        meta = call.meta
        if self.closed:
            raise Unavailable("connection to the server was lost", corrid=meta.corrid)
        if len(self.answers) >= self.max_inflight:
            raise Unavailable("too many calls in flight on this connection", corrid=meta.corrid)
        vouched = self.vouched
        if vouched is not None and call.target.partition(".")[0] not in vouched.names:
            raise Unavailable(
                f"{call.endpoint} proves itself {vouched.name!r} (its certificate), which is "
                f"not {call.target.partition('.')[0]!r}",
                corrid=meta.corrid,
            )
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
        if mode is ResponseMode.NO_RESPONSE:
            await self._send(frame)
            await anyio.lowlevel.checkpoint()
            return None
        answers = self.answers
        future = answers.expect(sid, call.deadline)
        try:
            await self._send(frame, future)
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
            self._send,
            call.deadline,
            call.meta.corrid,
            call.meter(),
        )


class ZmqClient(ConnectionPool):
    """The TransportClient of the zmq transport: a pool of DEALER connections."""

    def __init__(self, options: TransportOptions, task_group: TaskGroup) -> None:
        super().__init__(task_group)
        self._options = options

    async def connect(self, call: OutgoingCall, task_group: TaskGroup) -> ZmqConnection:
        address = zmq_address(call.endpoint)
        server = server_key(call.endpoint)
        if server is not None and self._options.keys is None:
            raise ConfigurationError(
                f"{call.endpoint} speaks CURVE: this client needs credentials with a "
                "certificate, its key and a CA (jesus.Client(sealing=jesus.Credentials.load("
                "ca, certificate, key)), or tls=)"
            )
        conn = ZmqConnection(address, call.codec, call.compression, self._options, server)
        # libzmq connects in the background: the call's deadline bounds the wait for it.
        timeout = math.inf if call.deadline is None else call.deadline - anyio.current_time()
        with anyio.move_on_after(timeout):
            await task_group.start(conn.run)
            return conn
        conn.close()
        # The call never went out: another instance may take it.
        raise Unavailable("no connection to the server came up before the deadline")
