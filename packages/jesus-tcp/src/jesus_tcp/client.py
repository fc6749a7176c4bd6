"""Client side: one multiplexed connection per (endpoint, codec, compression), answers matched
to their calls by stream id in the reader, without a task per call."""

from __future__ import annotations

import collections
import logging
import math
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
from anyio.abc import ByteStream, TaskGroup, TaskStatus

from jesus.errors import (
    CallError,
    ConnectionLost,
    DeadlineExceeded,
    InvalidRequest,
    ProtocolError,
    TooLarge,
    Unavailable,
)
from jesus.messages import ResponseMode
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import UNLIMITED, ProtocolConnection, Role
from jesus.transport import BROKEN, OutgoingCall, TransportOptions, connect_errors, why_broken
from jesus.transport.feed import Feed, feed
from jesus.transport.futures import clock_factory, future_factory
from jesus.transport.writer import FrameWriter

log = logging.getLogger("jesus.tcp.client")

READ_SIZE = 65536
# A loop of notifies stays cancellable at each one, and lets other tasks run at every this
# many (a turn of the event loop each would cost more than the notify).
YIELD_EVERY = 16
_ITEMS, _END, _ERROR = 0, 1, 2

Connector = Callable[[str], Awaitable[ByteStream]]


class _Inbox:
    """What the reader hands a stream's consumer: (kind, value, size) entries, items as lists
    in the order they came, with their frame's payload size. Cheaper per item than a memory
    object stream: a deque, and a bare future only when the consumer must wait."""

    __slots__ = (
        "_new_future",
        "_waiter",
        "closed",
        "entries",
        "uncredited",
        "uncredited_bytes",
        "window",
        "window_bytes",
    )

    def __init__(self, window: int, window_bytes: int, new_future: Callable[[], Any]) -> None:
        self.entries: collections.deque[tuple[int, Any, int]] = collections.deque()
        self.window = window
        self.window_bytes = window_bytes
        # Received and not yet given back as credit, in items and in payload bytes.
        self.uncredited = 0
        self.uncredited_bytes = 0
        self._new_future = new_future
        self._waiter: Any = None
        self.closed = False

    def put(self, kind: int, value: Any, size: int = 0) -> bool:
        """False when items go past the window: the server sent past its credit (a frame may
        start while any byte credit is left)."""
        if self.closed:
            return True
        if kind == _ITEMS:
            if self.uncredited_bytes >= self.window_bytes:
                return False
            self.uncredited += len(value)
            self.uncredited_bytes += size
            if self.uncredited > self.window:
                return False
        self.entries.append((kind, value, size))
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    async def wait(self) -> None:
        """Return once an entry is there."""
        while not self.entries:
            self._waiter = self._new_future()
            await self._waiter


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
        self.calls: dict[int, Any] = {}  # stream id -> future of the answer
        self.streams: dict[int, _Inbox] = {}
        self.closed = False
        self.draining = False
        self._clock = clock_factory()
        self._last_seen = self._clock()
        self._scope: anyio.CancelScope | None = None
        self._ended = anyio.Event()  # the server closed, or broke the protocol
        self._fed: Feed | None = None
        self._unyielded = 0  # noResponse calls sent since this connection last yielded
        # Calls in flight the server accepts on this connection (from its HELLO).
        self.max_inflight = self.limits.max_inflight_calls
        self._new_future = future_factory()
        self._deadlines: dict[int, float] = {}  # stream id -> deadline, of calls and streams
        self._expired: set[int] = set()  # streams whose deadline passed
        self._next_expiry = math.inf
        self._deadline_added = anyio.Event()

    @property
    def usable(self) -> bool:
        return not self.closed and not self.draining and not self.writer.closed

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            # Before any task starts, so a refusal reaches the caller as itself, ungrouped.
            await self._handshake()
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self.writer.run, tg.cancel_scope.cancel)
                task_status.started()
                tg.start_soon(self._keepalive)
                tg.start_soon(self._expire_deadlines)
                await self._read_loop()
                tg.cancel_scope.cancel()
        finally:
            self._fail_all(ConnectionLost("connection to the server was lost"))
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _handshake(self) -> None:
        try:
            with anyio.fail_after(self.limits.handshake_timeout):
                await self.stream.send(self.proto.send_hello())
                while True:
                    data = await self.stream.receive(READ_SIZE)
                    for event in self.proto.receive_data(data):
                        if type(event) is ev.HelloReceived:
                            announced = event.info.get("max_inflight_calls")
                            if isinstance(announced, int) and announced > 0:
                                self.max_inflight = announced
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
            raise Unavailable(
                f"server closed the connection during the handshake: {why_broken(exc)}"
            ) from None

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
                for event in proto.receive_data(data):
                    self._on_event(event)
        except ProtocolError as exc:
            log.warning("server broke the protocol, dropping the connection: %s", exc)
        except BROKEN:
            pass

    def _on_data(self, data: bytes) -> None:
        """One read, fed by the event loop's read callback (`jesus.transport.feed`)."""
        self._last_seen = self._clock()
        try:
            for event in self.proto.receive_data(data):
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
        kind = type(event)
        if kind is ev.ResponseReceived:
            future = self.calls.pop(event.stream_id, None)  # type: ignore[union-attr]
            if future is not None and not future.done():
                future.set_result(event.value)  # type: ignore[union-attr]
        elif kind is ev.ItemsReceived:
            self._items(event.stream_id, event.values, event.size)  # type: ignore[union-attr]
        elif kind is ev.ItemReceived:
            self._items(event.stream_id, [event.value], event.size)  # type: ignore[union-attr]
        elif kind is ev.AckReceived:
            future = self.calls.pop(event.stream_id, None)  # type: ignore[union-attr]
            if future is not None and not future.done():
                future.set_result(None)
        elif kind is ev.EndReceived:
            self._to_stream(event.stream_id, (_END, None))  # type: ignore[union-attr]
        elif kind is ev.ErrorReceived:
            sid, error = event.stream_id, event.error  # type: ignore[union-attr]
            if sid == 0:
                log.warning("server closed the connection: %s", error)
                self._fail_all(ConnectionLost(f"server closed the connection: {error.message}"))
                return
            future = self.calls.pop(sid, None)
            if future is not None:
                if not future.done():
                    future.set_exception(error)
            else:
                self._to_stream(sid, (_ERROR, error))
        elif kind is ev.GoAwayReceived:
            self.draining = True
        elif kind is ev.PingReceived:
            self.writer.write(self.proto.send_pong(event.payload))  # type: ignore[union-attr]

    def _items(self, sid: int, values: list[Any], size: int) -> None:
        inbox = self.streams.get(sid)
        if inbox is not None and not inbox.put(_ITEMS, values, size):
            log.warning("server sent past its stream credit; ending that stream")
            self.writer.write(self.proto.send_cancel(sid))

    def _to_stream(self, sid: int, entry: tuple[int, Any]) -> None:
        inbox = self.streams.get(sid)
        if inbox is not None:
            inbox.put(*entry)

    def _fail_all(self, error: CallError) -> None:
        self.closed = True
        calls, self.calls = self.calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(error)
        for sid in list(self.streams):
            self._to_stream(sid, (_ERROR, error))

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

    # ------------------------------------------------------------------ calls

    def _open(self, call: OutgoingCall, mode: ResponseMode) -> tuple[int, bytes]:
        meta = call.meta
        if len(self.calls) + len(self.streams) >= self.max_inflight:
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
        if mode is ResponseMode.NO_RESPONSE:
            self.writer.write(frame)
            self._unyielded += 1
            if self.writer.full:
                await self.writer.drain()
            elif self._unyielded >= YIELD_EVERY:
                self._unyielded = 0
                await anyio.lowlevel.checkpoint()
            else:
                await anyio.lowlevel.checkpoint_if_cancelled()
            return None
        future = self._new_future()
        self.calls[sid] = future
        deadline = call.deadline
        if deadline is not None:
            self._deadlines[sid] = deadline
            if deadline < self._next_expiry:
                self._deadline_added.set()  # the expiry task must wake earlier
        self.writer.write(frame)
        try:
            return await future
        except CallError as exc:
            if exc.corrid is None:
                exc.corrid = meta.corrid
            raise
        finally:
            self._deadlines.pop(sid, None)
            if self.calls.get(sid) is future:  # cancelled by the caller: tell the server
                del self.calls[sid]
                self.writer.write(self.proto.send_cancel(sid))

    async def _expire_deadlines(self) -> None:
        """One task per connection fails calls whose deadline passed, rather than a cancel
        scope per call (which costs more than the rest of a small call). It sleeps until the
        earliest deadline in flight; with one timeout for all calls that is rarely."""
        while True:
            now = anyio.current_time()
            earliest = math.inf
            for sid, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    del self._deadlines[sid]
                    future = self.calls.pop(sid, None)
                    if future is not None:
                        self.writer.write(self.proto.send_cancel(sid))
                        if not future.done():
                            future.set_exception(DeadlineExceeded("no answer before the deadline"))
                    elif sid in self.streams:  # wake its consumer, which sends the CANCEL
                        self._expired.add(sid)
                        self._to_stream(sid, (_ERROR, DeadlineExceeded("stream past its deadline")))
                elif deadline < earliest:
                    earliest = deadline
            self._next_expiry = earliest
            self._deadline_added = anyio.Event()
            with anyio.move_on_after(earliest - now):
                await self._deadline_added.wait()

    async def open_stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        window, meta = self.limits.stream_window, call.meta
        sid, frame = self._open(call, ResponseMode.STREAM)
        # A server that does not read byte credit does not keep to a byte window either.
        window_bytes = self.limits.stream_window_bytes if self.proto.credits_bytes else UNLIMITED
        inbox = self.streams[sid] = _Inbox(window, window_bytes, self._new_future)
        entries = inbox.entries
        deadline = call.deadline
        if deadline is not None:
            self._deadlines[sid] = deadline
            if deadline < self._next_expiry:
                self._deadline_added.set()
        self.writer.write(frame)
        # Credit goes back once half a window is consumed, in items or in bytes.
        half, half_bytes = max(1, window // 2), min(max(1, window_bytes // 2), 1 << 30)
        consumed = consumed_bytes = 0
        finished = False
        clock = clock_factory()
        try:
            while True:
                if not entries:
                    if deadline is not None and (sid in self._expired or clock() >= deadline):
                        raise _past_deadline(meta)
                    await inbox.wait()
                kind, value, size = entries.popleft()
                if kind == _ITEMS:
                    # Its bytes are given back as it is taken: the consumer holds one frame
                    # beyond the window at most.
                    consumed_bytes += size
                    for item in value:
                        # The deadline is this loop's (and the expiry task's, while it
                        # waits): a cancel scope per item would cost more than the item.
                        if deadline is not None and (sid in self._expired or clock() >= deadline):
                            raise _past_deadline(meta)
                        consumed += 1
                        if consumed >= half or consumed_bytes >= half_bytes:
                            inbox.uncredited -= consumed
                            inbox.uncredited_bytes -= consumed_bytes
                            self.writer.write(self.proto.send_credit(sid, consumed, consumed_bytes))
                            consumed = consumed_bytes = 0
                        yield item
                elif kind == _END:
                    finished = True
                    return
                else:
                    finished = True
                    if value.corrid is None:
                        value.corrid = meta.corrid
                    raise value
        finally:
            self.streams.pop(sid, None)
            self._deadlines.pop(sid, None)
            self._expired.discard(sid)
            inbox.closed = True
            if not finished and sid in self.proto.open_streams:
                self.writer.write(self.proto.send_cancel(sid))


def _past_deadline(meta: Any) -> DeadlineExceeded:
    return DeadlineExceeded("stream past its deadline", corrid=meta.corrid)


class StreamClient:
    """The TransportClient of the tcp and unix transports: a pool of multiplexed connections."""

    # It ends a stream at its call's deadline itself (jesus.transport.contract).
    stream_deadlines = True

    def __init__(
        self, connect: Connector, options: TransportOptions, task_group: TaskGroup
    ) -> None:
        self._connect = connect
        self._options = options
        self._tg = task_group
        self._pool: dict[tuple[str, str], ClientConnection] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    async def _get(self, call: OutgoingCall) -> ClientConnection:
        # One connection per endpoint and channel: the codec and compression are the
        # connection's, fixed by its HELLO.
        key = (call.endpoint, call.channel.name)
        conn = self._pool.get(key)
        if conn is not None and conn.usable:
            return conn
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            conn = self._pool.get(key)
            if conn is not None and conn.usable:
                return conn
            with connect_errors(call.endpoint):
                stream = await self._connect(call.endpoint)
            conn = ClientConnection(stream, call.codec, call.compression, self._options)
            await self._tg.start(conn.run)
            self._pool[key] = conn
            return conn

    async def request(self, call: OutgoingCall) -> Any:
        # The pool look-up inline: this runs once per call.
        conn = self._pool.get((call.endpoint, call.channel.name))
        if conn is None or not conn.usable:
            conn = await self._get(call)
        return await conn.request(call)

    def stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        conn = self._pool.get((call.endpoint, call.channel.name))
        if conn is not None and conn.usable:
            return conn.open_stream(call)  # no generator in between, item after item
        return self._connect_and_stream(call)

    async def _connect_and_stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        conn = await self._get(call)
        items = conn.open_stream(call)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        pool, self._pool = self._pool, {}
        for conn in pool.values():
            with anyio.move_on_after(1, shield=True):
                await conn.writer.flush()
            conn.close()
