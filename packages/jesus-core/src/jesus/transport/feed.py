"""Reading by callback: on asyncio a connection's bytes can be handed to the transport's
parser as they arrive, in the event loop's own read callback, instead of waking a reader
task for each read. That saves a turn of the loop and two system calls per read (anyio's
asyncio streams pause reading after every `receive()` and resume it before the next).

`feed(stream, on_data, on_end)` takes the reading of `stream` over and returns a `Feed`, or
returns None where it cannot (trio, TLS, unix sockets on asyncio), and the transport keeps
its read loop. Writing is untouched: `stream.send()` and its back-pressure work as before.
`datagram_feed(socket, on_datagram, on_end)` does the same for an anyio UDP socket (whose
`receive()` costs a turn of the loop per datagram).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from anyio.abc import ByteStream

# The most a read takes from a stream socket: below malloc's mmap threshold (128 KiB).
READ_CHUNK = 65536
# Datagrams taken from a socket in one read callback at most, and the largest one.
DATAGRAMS_PER_READ = 32
MAX_DATAGRAM = 65536


class Feed:
    """Reading taken over from an anyio stream: `on_data(bytes)` gets every read, and
    `on_end()` is called once when the peer closes or the connection breaks. `pause()` stops
    reading (back-pressure, a decode in a worker thread); `resume()` starts it again."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def pause(self) -> None:
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()


class _WritingToInner:
    """What concerns writing goes on to anyio's own protocol, whose events its `send()`
    waits on."""

    _inner: Any

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _FeedProtocol(_WritingToInner, asyncio.Protocol):
    """Hands reads to `on_data`."""

    def __init__(
        self, inner: Any, on_data: Callable[[bytes], None], on_end: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._on_data = on_data
        self._on_end = on_end
        self._ended = False

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def eof_received(self) -> bool | None:
        self._end()
        return True  # half-closed, as anyio keeps it: the owner closes the stream

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_end()


def _taken_over(stream: Any) -> tuple[Any, Any, Any]:
    """The asyncio transport under an anyio stream or socket, anyio's protocol on it and that
    protocol's queue of what it read; (None, None, None) where reading cannot be taken over
    (trio, TLS, a transport closing)."""
    transport: Any = getattr(stream, "_transport", None)
    inner: Any = getattr(stream, "_protocol", None)
    queue = getattr(inner, "read_queue", None)
    if transport is None or queue is None or not hasattr(transport, "set_protocol"):
        return None, None, None
    if transport.is_closing():
        return None, None, None
    return transport, inner, queue


def feed(
    stream: ByteStream, on_data: Callable[[bytes], None], on_end: Callable[[], None]
) -> Feed | None:
    """Take the reading of `stream` over (see the module), or None where it cannot be.
    Call it between reads: what anyio had already read is handed to `on_data` first."""
    transport, inner, queue = _taken_over(stream)
    if transport is None:
        return None
    protocol = _FeedProtocol(inner, on_data, on_end)
    transport.set_protocol(protocol)
    if getattr(transport, "max_size", 0) > READ_CHUNK:
        # asyncio reads into a buffer of max_size (256 KiB) and shrinks it to what came: one
        # that large is mmapped and unmapped again on every read (three system calls).
        transport.max_size = READ_CHUNK
    while queue:
        on_data(queue.popleft())
    inner.read_event.clear()
    if getattr(inner, "is_at_eof", False):
        protocol._end()
        return Feed(transport)
    transport.resume_reading()
    return Feed(transport)


class _DatagramFeedProtocol(_WritingToInner, asyncio.DatagramProtocol):
    """Hands datagrams to `on_datagram`, and the ones already queued in the socket after
    each, up to DATAGRAMS_PER_READ (a turn of the loop per datagram costs more than the
    datagram)."""

    def __init__(
        self,
        transport: Any,
        inner: Any,
        on_datagram: Callable[[bytes, Any], None],
        on_end: Callable[[], None],
    ) -> None:
        self._transport = transport
        # asyncio's own socket (uvloop has none to share: one datagram per turn there).
        self._sock = getattr(transport, "_sock", None)
        self._inner = inner
        self._on_datagram = on_datagram
        self._on_end = on_end

    def datagram_received(self, data: bytes, addr: Any) -> None:
        on_datagram, sock, transport = self._on_datagram, self._sock, self._transport
        on_datagram(data, addr)
        if sock is None:
            return
        for _ in range(DATAGRAMS_PER_READ - 1):
            if transport.is_closing():
                return
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._inner.error_received(exc)
                return
            on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._inner.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)
        self._on_end()


def datagram_feed(
    socket: Any, on_datagram: Callable[[bytes, Any], None], on_end: Callable[[], None]
) -> bool:
    """Take the reading of an anyio UDP socket over: every datagram goes to
    `on_datagram(data, address)` from the loop's read callback, and `on_end()` is called
    when the socket closes. False where it cannot be (trio): keep a receive loop."""
    transport, inner, queue = _taken_over(socket)
    if transport is None:
        return False
    transport.set_protocol(_DatagramFeedProtocol(transport, inner, on_datagram, on_end))
    while queue:
        on_datagram(*queue.popleft())
    return True
