"""Server side: accept connections, run the handshake, dispatch each call as it arrives."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, TaskGroup

from jesus.errors import (
    BadFrame,
    CallError,
    InvalidResponse,
    RemoteProtocolError,
    TooLarge,
    Unavailable,
)
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.protocol import events as ev
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.protocol.frames import FrameTooLarge
from jesus.runtime.dispatcher import CallDispatcher, PreparedCall
from jesus.runtime.spawner import CallSpawner
from jesus.runtime.writer import BROKEN, FrameWriter
from jesus.transport import TransportOptions

log = logging.getLogger("jesus.tcp.server")

READ_SIZE = 65536


class StreamListener:
    """Serves the jesus protocol on an anyio listener (TCP, TLS or unix)."""

    def __init__(
        self,
        listener: Listener[Any],
        endpoint: str,
        dispatcher: CallDispatcher,
        options: TransportOptions,
    ) -> None:
        self.endpoint = endpoint
        self._listener = listener
        self._dispatcher = dispatcher
        self._options = options
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._stopped = anyio.Event()
        self._serving = False
        self.refused_connections = 0

    async def serve(self) -> None:
        self._serving = True
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._accept_loop, tg)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._listener.aclose()

    async def _accept_loop(self, tg: TaskGroup) -> None:
        await self._listener.serve(self._handle, task_group=tg)

    async def _handle(self, stream: ByteStream) -> None:
        limits = self._options.limits
        if self._closing or len(self._connections) >= limits.max_connections:
            self.refused_connections += 1
            await _refuse(stream, limits)
            return
        conn = ServerConnection(stream, self._dispatcher, self._options)
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception:
            # One connection's failure must never take the listener down.
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
        for conn in list(self._connections):
            await conn.idle.wait()
        for conn in list(self._connections):
            with anyio.move_on_after(1):
                await conn.writer.flush()  # the last answers
            await conn.close()
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
    def __init__(
        self, stream: ByteStream, dispatcher: CallDispatcher, options: TransportOptions
    ) -> None:
        self.stream = stream
        self.dispatcher = dispatcher
        self.limits = options.limits
        self.proto = ProtocolConnection(
            Role.SERVER,
            options.limits,
            codecs=dict(options.codecs),
            compressions=dict(options.compressions),
        )
        self.writer = FrameWriter(stream, options.limits.write_buffer_size)
        self.spawner: CallSpawner | None = None
        self.credits: dict[int, _Credit] = {}
        self.inflight = 0
        self.idle = anyio.Event()  # set whenever no call runs on this connection
        self.idle.set()
        self.draining = False
        self._tg: TaskGroup | None = None
        self._done = anyio.Event()

    def _started(self) -> None:
        self.inflight += 1
        if self.inflight == 1:
            self.idle = anyio.Event()

    def _finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self.idle.set()

    def goaway(self, reason: str) -> None:
        self.draining = True
        self.writer.write(self.proto.send_goaway(reason))

    async def close(self) -> None:
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self.spawner = CallSpawner(tg, self._deadline_passed)
                tg.start_soon(self.writer.run, tg.cancel_scope.cancel)
                try:
                    await self._read_loop()
                finally:
                    # The peer is gone or broke the protocol: its calls have nowhere to answer.
                    with anyio.CancelScope(shield=True):
                        await self.spawner.aclose()
                tg.cancel_scope.cancel()
        finally:
            self.idle.set()  # nothing runs any more, whatever the count says
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _read_loop(self) -> None:
        proto = self.proto
        idle = self.limits.keepalive_interval * 3
        try:
            with anyio.fail_after(self.limits.handshake_timeout):
                while proto.peer_info == {}:
                    data = await self.stream.receive(READ_SIZE)
                    for event in proto.receive_data(data):
                        self._on_event(event)
            while True:
                with anyio.fail_after(idle if math.isfinite(idle) else None):
                    data = await self.stream.receive(READ_SIZE)
                for event in proto.receive_data(data):
                    self._on_event(event)
        except TimeoutError:
            log.info("closing idle or silent connection")
        except RemoteProtocolError as exc:
            log.warning("protocol error from peer, closing its connection: %s", exc)
            error = TooLarge(str(exc)) if isinstance(exc, FrameTooLarge) else BadFrame(str(exc))
            self.writer.write(proto.send_error(0, error))
            with anyio.move_on_after(1, shield=True):
                await self.writer.flush()
        except BROKEN:
            pass

    def _on_event(self, event: ev.Event) -> None:
        proto, writer = self.proto, self.writer
        if type(event) is ev.RequestReceived:
            sid, mode = event.stream_id, event.mode
            if self.draining:
                if mode is not ResponseMode.NO_RESPONSE:
                    writer.write(proto.send_error(sid, Unavailable("server is shutting down")))
                return
            if self.inflight >= self.limits.max_inflight_calls:
                if mode is not ResponseMode.NO_RESPONSE:
                    writer.write(
                        proto.send_error(
                            sid,
                            Unavailable(
                                f"too many calls in flight on this connection "
                                f"(max_inflight_calls={self.limits.max_inflight_calls})"
                            ),
                        )
                    )
                else:
                    log.warning("dropped a noResponse call: max_inflight_calls reached")
                return
            try:
                call = self.dispatcher.prepare(event.method, event.meta, event.data, mode)
            except CallError as exc:
                if mode is ResponseMode.NO_RESPONSE:
                    log.warning("rejected noResponse call to %s: %s", event.method, exc)
                else:
                    writer.write(proto.send_error(sid, exc))
                return
            self._started()
            assert self.spawner is not None
            if mode is ResponseMode.STREAM:
                self.credits[sid] = _Credit(proto.peer_info.get("stream_window", 16))
                job, args = self._stream, (sid, call)
            else:
                if mode is ResponseMode.ACK:
                    writer.write(proto.send_ack(sid))
                job, args = self._call, (sid, call, mode)  # type: ignore[assignment]
            self.spawner.spawn(sid, job, *args, deadline=call.deadline, context=call)
        elif type(event) is ev.CancelReceived:
            if self.spawner is not None:
                self.spawner.cancel(event.stream_id)
        elif type(event) is ev.CreditReceived:
            credit = self.credits.get(event.stream_id)
            if credit is not None:
                credit.grant(event.credit)
        elif type(event) is ev.RequestRejected:
            if event.mode is ResponseMode.NO_RESPONSE:
                log.warning("rejected a noResponse call: %s", event.error)
            else:
                writer.write(proto.send_error(event.stream_id, event.error))
        elif type(event) is ev.HelloReceived:
            writer.write(proto.send_hello())
        elif type(event) is ev.PingReceived:
            writer.write(proto.send_pong(event.payload))
        elif type(event) is ev.ErrorReceived:
            log.warning("peer reported an error: %s", event.error)

    def _deadline_passed(self, sid: int, call: PreparedCall) -> None:
        if sid in self.proto.open_streams:
            self.writer.write(self.proto.send_error(sid, self.dispatcher.deadline_exceeded(call)))
        else:
            log.warning("%s ran past its deadline", call.entry.full_name)

    async def _call(self, sid: int, call: PreparedCall, mode: ResponseMode) -> None:
        proto, writer = self.proto, self.writer
        try:
            result = await self.dispatcher.run(call)
            if mode is ResponseMode.RESPONSE:
                try:
                    frame = proto.send_response(sid, result)
                except (TooLarge, ValueError) as exc:
                    error = exc if isinstance(exc, TooLarge) else InvalidResponse(str(exc))
                    error.corrid = call.meta.corrid
                    frame = proto.send_error(sid, error)
                writer.write(frame)
                if writer.full:
                    await writer.drain()
        except CallError as exc:
            if mode is ResponseMode.RESPONSE:
                writer.write(proto.send_error(sid, exc))
            else:
                log.warning("%s call failed after it was accepted: %s", mode.value, exc)
        finally:
            proto.open_streams.pop(sid, None)  # cancelled: nothing more goes to this stream
            self._finished()

    async def _stream(self, sid: int, call: PreparedCall) -> None:
        proto, writer = self.proto, self.writer
        credit = self.credits[sid]
        items = self.dispatcher.open_stream(call)
        try:
            async for item in items:
                await credit.take()
                try:
                    writer.write(proto.send_item(sid, item))
                except (TooLarge, ValueError) as exc:
                    raise (
                        exc if isinstance(exc, TooLarge) else InvalidResponse(str(exc))
                    ) from None
                if writer.full:
                    await writer.drain()
            writer.write(proto.send_end(sid))
        except CallError as exc:
            if exc.corrid is None:
                exc.corrid = call.meta.corrid
            writer.write(proto.send_error(sid, exc))
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()  # type: ignore[attr-defined]
            proto.open_streams.pop(sid, None)
            self.credits.pop(sid, None)
            self._finished()


class _Credit:
    """Items the client lets this stream send before it must wait (flow control)."""

    def __init__(self, initial: int) -> None:
        self.available = max(1, int(initial))
        self._event = anyio.Event()

    def grant(self, n: int) -> None:
        self.available += n
        self._event.set()

    async def take(self) -> None:
        while self.available <= 0:
            self._event = anyio.Event()
            await self._event.wait()
        self.available -= 1
