"""One task reads a zmq socket, on asyncio and trio alike, through anyio's wait on the socket's
file descriptor.

The FD is edge-triggered (pyzmq's docs, "zmq.FD"): it signals that the socket's state may
have changed, not that a message waits, and a send made by another task may consume the
signal of a message that arrived meanwhile. So the rules here: read until EAGAIN, then wait
only once `zmq.EVENTS` shows nothing to read; after every send, check `zmq.EVENTS` and wake
the reader when there is something to read. Only the reader waits on the FD (trio allows one
waiter per descriptor); a sender that met a full pipe waits for the reader to see POLLOUT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import anyio.lowlevel

import zmq

# Messages read before other tasks get a turn: one socket must not starve the loop.
READ_BATCH = 64

OnMessage = Callable[[list[Any]], Awaitable[None] | None]


class SocketPump:
    """Reads `sock` in `run()`, handing each multipart message to `on_message` (which may
    return an awaitable: the reader waits for it before it reads on): as bytes, or as
    `zmq.Frame`s while `copy` is False (a frame carries its connection's properties)."""

    __slots__ = ("_fd", "_on_message", "_wait", "_writable", "copy", "sock")

    def __init__(self, sock: zmq.Socket[Any], on_message: OnMessage) -> None:
        self.sock = sock
        self._fd = sock.fileno()
        self._on_message = on_message
        self._wait: anyio.CancelScope | None = None  # the reader's wait on the FD
        self._writable: anyio.Event | None = None  # senders waiting for POLLOUT
        self.copy = True

    async def run(self) -> None:
        sock, on_message = self.sock, self._on_message
        while True:
            for _ in range(READ_BATCH):
                try:
                    parts = sock.recv_multipart(zmq.NOBLOCK, self.copy)
                except zmq.Again:
                    break
                pending = on_message(parts)
                if pending is not None:
                    await pending
            else:
                await anyio.lowlevel.checkpoint()
                continue
            events = events_of(sock)
            if events & zmq.POLLOUT and self._writable is not None:
                self._writable.set()
                self._writable = None
            if events & zmq.POLLIN:
                await anyio.lowlevel.checkpoint()
                continue
            with anyio.CancelScope() as self._wait:
                await anyio.wait_readable(self._fd)
            self._wait = None

    def sent(self) -> None:
        """After a send: a message that arrived meanwhile may have taken the FD's signal."""
        if self._wait is not None and events_of(self.sock) & zmq.POLLIN:
            self._wait.cancel()

    def send(self, parts: list[bytes]) -> bool:
        """Send at once; False when the pipe is full (EAGAIN). Raises ZMQError otherwise."""
        try:
            self.sock.send_multipart(parts, zmq.NOBLOCK)
        except zmq.Again:
            return False
        finally:
            self.sent()
        return True

    async def writable(self) -> None:
        """Return once the socket may take a message again (or soon: the caller retries)."""
        if events_of(self.sock) & zmq.POLLOUT:
            return
        if self._writable is None:
            self._writable = anyio.Event()
        event = self._writable
        if self._wait is not None:
            self._wait.cancel()  # the reader checks POLLOUT before it waits again
        with anyio.move_on_after(0.05):  # POLLOUT may come with no edge the reader sees
            await event.wait()


def events_of(sock: zmq.Socket[Any]) -> int:
    """`zmq.EVENTS`: what the socket can do now (reading it also processes libzmq's commands)."""
    return cast(int, sock.getsockopt(zmq.EVENTS))
