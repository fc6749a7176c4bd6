"""Writer for byte-stream transports. A frame goes to the socket at once when nothing waits
before it, as a raw asyncio protocol writes, so that the peer starts on each answer while the
next are made; past the first `BURST` frames of a loop turn, the rest of that turn's gather
and leave in one send at its end (on trio: once the tasks already runnable ran, from the
writer task), which spares system calls when a read brought many requests. What the socket
cannot take queues and goes out in as few `send()` calls as possible. Stream items queue
(`write(frame, at_once=False)`), and frames may be deferred (`defer`): made just before the
next send, so that what gathers until then (a stream's items) goes in one frame."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketStream

from jesus.transport.boundary import BROKEN
from jesus.transport.spawner import running_asyncio_loop

# Frames of one loop turn that go at once. Holding all but the first to the turn's end made
# each end wait out the other's turn (64 in flight: 0.6-0.8x the calls/s, twice the p99);
# sending every one at once cost a system call each (2-3 µs a call at each end).
BURST = 8

# Hands bytes to the socket without waiting; returns how many it took (0 when it took none).
DirectSend = Callable[[bytes], int]


def direct_send(stream: ByteStream) -> DirectSend | None:
    """The way to write to `stream` without a task switch, or None (TLS, a memory stream).

    Writing at once rather than from the writer task is what lets the peer start on the
    first answers while later ones are still being computed: with every write deferred to
    the end of the loop's turn, the two ends take turns instead of working side by side.
    """
    transport = getattr(stream, "_transport", None)  # anyio on asyncio: the asyncio transport
    if transport is not None and hasattr(transport, "get_write_buffer_size"):

        def to_transport(frame: bytes) -> int:
            # Behind bytes the transport still buffers, a frame waits its turn in the queue.
            if transport.get_write_buffer_size() or transport.is_closing():
                return 0
            transport.write(frame)
            return len(frame)

        return to_transport
    if isinstance(stream, SocketStream):
        # A raw socket stream (trio's, unix on asyncio) keeps nothing of its own unsent.
        sock = stream.extra(SocketAttribute.raw_socket)

        def to_socket(frame: bytes) -> int:
            try:
                return sock.send(frame)
            except OSError:
                return 0  # full, or broken: the writer task's send meets it and reports it

        return to_socket
    return None


class FrameSink(Protocol):
    """Where a connection's frames go: `FrameWriter` for a byte stream; a transport with a
    message per frame provides the same (see `jesus.transport.reply`)."""

    @property
    def closed(self) -> bool:
        """The peer is gone: what is written is dropped."""
        ...

    @property
    def full(self) -> bool:
        """Writers should `await drain()` before they write more."""
        ...

    def write(self, frame: bytes, at_once: bool = True) -> None: ...

    def defer(self, produce: Callable[[], None]) -> None:
        """Call `produce` (which writes frames) once, before the next frames go out."""
        ...

    async def drain(self) -> None: ...


class FrameWriter:
    """Frames are written synchronously (`write`); what the socket cannot take at once is
    queued and flushed by one task (`run`).

    When more than `high_water` bytes wait, `drain()` blocks its caller until the socket
    catches up, so a slow peer pushes back instead of growing the queue without bound.
    """

    def __init__(self, stream: ByteStream, high_water: int) -> None:
        self._stream = stream
        self._direct = direct_send(stream)
        # Frames that went at once this turn; past BURST they gather until _end_turn
        # (asyncio) or the writer task's next round (trio).
        self._loop: Any = running_asyncio_loop() if self._direct is not None else None
        self._burst = 0
        self._queue: list[bytes] = []
        self._deferred: list[Callable[[], None]] = []
        self._queued = 0
        self._high_water = high_water
        self._sending = False  # the run task is inside a send: nothing may overtake it
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._idle = anyio.Event()  # set when the queue empties, for flush()
        self.closed = False
        self._ended = False  # the last frame was written (`end`): later ones are dropped

    def write(self, frame: bytes, at_once: bool = True) -> None:
        """Queue `frame`, or with `at_once` send it now when nothing waits before it. The
        items of a stream come in runs, and go cheaper together (`at_once=False`)."""
        if self.closed or self._ended:
            return
        # Deferred frames were written before this one: it must not overtake them.
        if (
            at_once
            and self._direct is not None
            and not self._queue
            and not self._sending
            and not self._deferred
        ):
            burst = self._burst
            if burst >= BURST:
                # It goes with the rest of this turn's frames at the turn's end.
                self._queue.append(frame)
                self._queued += len(frame)
                return
            sent = self._direct(frame)
            self._burst = burst + 1
            if not burst:  # the turn's first
                if self._loop is not None:
                    self._loop.call_soon(self._end_turn)
                else:
                    # trio: the writer task, woken now, runs after the tasks already
                    # runnable, and sends what they write past the burst.
                    self._wake.set()
            if sent == len(frame):
                return
            frame = frame[sent:]
        self._queue.append(frame)
        self._queued += len(frame)
        if len(self._queue) == 1 and not self._burst:
            self._wake.set()

    def _end_turn(self) -> None:
        """The frames gathered this turn, in one send when nothing else waits to go first;
        else the writer task sends them."""
        self._burst = 0
        queue = self._queue
        if not queue or self.closed:
            return
        if self._sending or self._deferred or self._direct is None:
            self._wake.set()
            return
        data = b"".join(queue) if len(queue) > 1 else queue[0]
        queue.clear()
        was_full = self._queued > self._high_water
        sent = self._direct(data)
        if sent < len(data):
            queue.append(data[sent:])
            self._queued = len(data) - sent
            self._wake.set()
            return
        self._queued = 0
        self._idle.set()
        if was_full:
            self._drained.set()
            self._drained = anyio.Event()

    def defer(self, produce: Callable[[], None]) -> None:
        """Call `produce` (which writes frames) just before the next send, once."""
        if self.closed or self._ended:
            return
        self._deferred.append(produce)
        if len(self._deferred) == 1:
            self._wake.set()

    def end(self, frame: bytes) -> None:
        """Write `frame` as the last: the peer is told the connection ends (an ERROR on stream
        0), so nothing may follow it, not even what was deferred before."""
        self._deferred.clear()
        self.write(frame)
        self._ended = True

    @property
    def full(self) -> bool:
        """True while senders should `await drain()` (checked first: most writes never wait)."""
        return self._queued > self._high_water and not self.closed

    async def drain(self) -> None:
        while self.full:
            await self._drained.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far was handed to the socket (before closing)."""
        while not self.closed and (self._queue or self._sending or self._deferred):
            if self._idle.is_set():
                self._idle = anyio.Event()
            await self._idle.wait()

    async def run(self, on_broken: Callable[[], None]) -> None:
        """Flush until the stream breaks (then call `on_broken`) or the task is cancelled."""
        try:
            while True:
                self._burst = 0
                if self._deferred:
                    deferred, self._deferred = self._deferred, []
                    for produce in deferred:
                        produce()
                if not self._queue:
                    self._idle.set()
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                data = b"".join(self._queue) if len(self._queue) > 1 else self._queue[0]
                self._queue.clear()
                self._queued = 0
                # Straight to the socket when it takes it all (a stream's batches): anyio's
                # send costs more than the write; behind buffered bytes, the send waits.
                sent = 0 if self._direct is None else self._direct(data)
                if sent < len(data):
                    self._sending = True
                    try:
                        await self._stream.send(data[sent:] if sent else data)
                    finally:
                        self._sending = False
                if self._queued <= self._high_water:
                    self._drained.set()
                    self._drained = anyio.Event()
        except BROKEN:
            on_broken()
        finally:
            self.closed = True
            self._drained.set()
            self._idle.set()
