"""The client side of one connection's calls, for any transport that carries PROTOCOL.md
frames: the answers the reader receives matched to their calls by stream id (a future per
call, an inbox per stream, without a task per call), stream credit given back as items are
consumed, and one task that fails calls and streams past their deadline."""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio

from jesus.errors import CallError, DeadlineExceeded
from jesus.limits import Limits
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import UNLIMITED, ProtocolConnection
from jesus.protocol.frames import HEADER_SIZE
from jesus.transport.futures import clock_factory, future_factory
from jesus.transport.traffic import UNCOUNTED, Meter

log = logging.getLogger("jesus.transport")

_ITEMS, _END, _ERROR = 0, 1, 2
_RESPONSE_RECEIVED = ev.ResponseReceived

# Writes a control frame (CANCEL, CREDIT) to the server without waiting.
Write = Callable[[bytes], None]


class StreamInbox:
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


class Answers:
    """The calls and streams in flight on one client connection.

    The transport sends each request and hands every event its reader decodes to
    `on_event`; it runs `expire_deadlines` as a task beside its reader. Call from inside
    the event loop.
    """

    def __init__(self, proto: ProtocolConnection, limits: Limits, write: Write) -> None:
        self.proto = proto
        self.limits = limits
        self.write = write
        self.calls: dict[int, Any] = {}  # stream id -> future of the answer
        self.streams: dict[int, StreamInbox] = {}
        self.new_future = future_factory()
        self._deadlines: dict[int, float] = {}  # stream id -> deadline, of calls and streams
        self._expired: set[int] = set()  # streams whose deadline passed
        self._next_expiry = math.inf
        self._deadline_added = anyio.Event()

    def __len__(self) -> int:
        return len(self.calls) + len(self.streams)

    # ------------------------------------------------------------------ calls

    def expect(self, sid: int, deadline: float | None) -> Any:
        """The future of the answer on `sid`: the ResponseReceived (its value and size, for
        the caller to count), None for an ack; failed with DeadlineExceeded past `deadline`."""
        future = self.new_future()
        self.calls[sid] = future
        if deadline is not None:
            self._watch(sid, deadline)
        return future

    def settle(self, sid: int, future: Any) -> None:
        """After the wait for `future` (answered, failed or cancelled): a call its caller gave
        up on is cancelled at the server."""
        self._deadlines.pop(sid, None)
        if self.calls.get(sid) is future:
            del self.calls[sid]
            self.write(self.proto.send_cancel(sid))

    def _watch(self, sid: int, deadline: float) -> None:
        self._deadlines[sid] = deadline
        if deadline < self._next_expiry:
            self._deadline_added.set()  # the expiry task must wake earlier

    # ------------------------------------------------------------------ reading

    def on_events(self, events: list[ev.Event]) -> list[ev.Event]:
        """`on_event` for each event of a read, the common one (an answer) without a call per
        event; returns those that are not answers, for the transport."""
        rest = []
        calls = self.calls
        for event in events:
            if type(event) is _RESPONSE_RECEIVED:
                future = calls.pop(event.stream_id, None)
                if future is not None and not future.done():
                    future.set_result(event)  # the size is counted by the caller
            elif not self.on_event(event):
                rest.append(event)
        return rest

    def on_event(self, event: ev.Event) -> bool:
        """Hand an answer to its call or stream; False for what is not an answer to a call
        (HELLO, PING, GOAWAY, an ERROR on stream 0), which is the transport's to handle."""
        kind = type(event)
        if kind is ev.ResponseReceived:
            future = self.calls.pop(event.stream_id, None)  # type: ignore[union-attr]
            if future is not None and not future.done():
                future.set_result(event)
        elif kind is ev.ItemsReceived:
            self._items(event.stream_id, event.values, event.size)  # type: ignore[union-attr]
        elif kind is ev.ItemReceived:
            self._items(event.stream_id, [event.value], event.size)  # type: ignore[union-attr]
        elif kind is ev.AckReceived:
            future = self.calls.pop(event.stream_id, None)  # type: ignore[union-attr]
            if future is not None and not future.done():
                future.set_result(None)
        elif kind is ev.EndReceived:
            self._to_stream(event.stream_id, _END, None)  # type: ignore[union-attr]
        elif kind is ev.ErrorReceived and event.stream_id != 0:  # type: ignore[union-attr]
            sid, error = event.stream_id, event.error  # type: ignore[union-attr]
            future = self.calls.pop(sid, None)
            if future is not None:
                if not future.done():
                    future.set_exception(error)
            else:
                self._to_stream(sid, _ERROR, error)
        else:
            return False
        return True

    def _items(self, sid: int, values: list[Any], size: int) -> None:
        inbox = self.streams.get(sid)
        if inbox is not None and not inbox.put(_ITEMS, values, size):
            self._past_credit(sid)

    def _past_credit(self, sid: int) -> None:
        log.warning("server sent past its stream credit; ending that stream")
        self.write(self.proto.send_cancel(sid))

    def _to_stream(self, sid: int, kind: int, value: Any) -> None:
        inbox = self.streams.get(sid)
        if inbox is not None:
            inbox.put(kind, value)

    def fail_all(self, error: CallError) -> None:
        """The connection is gone: every call and stream in flight fails with `error`."""
        calls, self.calls = self.calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(error)
        for sid in list(self.streams):
            self._to_stream(sid, _ERROR, error)

    async def expire_deadlines(self) -> None:
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
                        self.write(self.proto.send_cancel(sid))
                        if not future.done():
                            future.set_exception(DeadlineExceeded("no answer before the deadline"))
                    elif sid in self.streams:  # wake its consumer, which sends the CANCEL
                        self._expired.add(sid)
                        self._to_stream(sid, _ERROR, DeadlineExceeded("stream past its deadline"))
                elif deadline < earliest:
                    earliest = deadline
            self._next_expiry = earliest
            self._deadline_added = anyio.Event()
            with anyio.move_on_after(earliest - now):
                await self._deadline_added.wait()

    # ------------------------------------------------------------------ streams

    async def stream(
        self,
        request: Callable[[], tuple[int, bytes]],
        send: Callable[[bytes], Awaitable[None] | None],
        deadline: float | None,
        corrid: str | None,
        meter: Meter = UNCOUNTED,
    ) -> AsyncIterator[Any]:
        """The items of a stream: `request()` makes its stream id and request frame (once
        the iteration starts, so that a refusal is raised there), `send` writes the frame
        and may return what to await before it went out; the bytes of its request and of its
        items (as they are taken) are added to `meter`."""
        sid, frame = request()
        meter.sent += len(frame) - HEADER_SIZE
        window = self.limits.stream_window
        # A server that does not read byte credit does not keep to a byte window either.
        window_bytes = self.limits.stream_window_bytes if self.proto.credits_bytes else UNLIMITED
        inbox = self.streams[sid] = StreamInbox(window, window_bytes, self.new_future)
        entries = inbox.entries
        if deadline is not None:
            self._watch(sid, deadline)
        # Credit goes back once half a window is consumed, in items or in bytes.
        half, half_bytes = max(1, window // 2), min(max(1, window_bytes // 2), 1 << 30)
        consumed = consumed_bytes = 0
        finished = False
        clock = clock_factory()
        expired = self._expired
        try:
            sending = send(frame)
            if sending is not None:
                await sending
            while True:
                if not entries:
                    if deadline is not None and (sid in expired or clock() >= deadline):
                        raise _past_deadline(corrid)
                    await inbox.wait()
                kind, value, size = entries.popleft()
                if kind == _ITEMS:
                    # Its bytes are given back as it is taken: the consumer holds one frame
                    # beyond the window at most.
                    consumed_bytes += size
                    meter.received += size
                    for item in value:
                        # The deadline is this loop's (and the expiry task's, while it
                        # waits): a cancel scope per item would cost more than the item.
                        if deadline is not None and (sid in expired or clock() >= deadline):
                            raise _past_deadline(corrid)
                        consumed += 1
                        if consumed >= half or consumed_bytes >= half_bytes:
                            inbox.uncredited -= consumed
                            inbox.uncredited_bytes -= consumed_bytes
                            self.write(self.proto.send_credit(sid, consumed, consumed_bytes))
                            consumed = consumed_bytes = 0
                        yield item
                elif kind == _END:
                    finished = True
                    return
                else:
                    finished = True
                    if value.corrid is None:
                        value.corrid = corrid
                    raise value
        finally:
            self.streams.pop(sid, None)
            self._deadlines.pop(sid, None)
            expired.discard(sid)
            inbox.closed = True
            if not finished and sid in self.proto.open_streams:
                self.write(self.proto.send_cancel(sid))


def _past_deadline(corrid: str | None) -> DeadlineExceeded:
    return DeadlineExceeded("stream past its deadline", corrid=corrid)
