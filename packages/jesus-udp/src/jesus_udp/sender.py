"""Sending datagrams: straight to the socket while it takes them, else queued for one task
(anyio sockets take one sender at a time) that waits until the socket has room."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import SocketAttribute

log = logging.getLogger("jesus.udp")

_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)

# Hands a datagram to the socket without waiting; False when the socket cannot take it now.
DirectSendto = Callable[[bytes, tuple[str, int]], bool]


def direct_sendto(socket: Any) -> DirectSendto | None:
    """The way to send on `socket` without a task switch and anyio's checkpoints, or None.
    A send through the sender task costs a turn of the loop per datagram."""
    transport = getattr(socket, "_transport", None)  # anyio on asyncio: the asyncio transport
    if transport is not None and hasattr(transport, "sendto"):

        def to_transport(data: bytes, address: tuple[str, int]) -> bool:
            # Behind what the transport still buffers, a datagram waits its turn in the queue.
            if transport.get_write_buffer_size() or transport.is_closing():
                return False
            transport.sendto(data, address)  # errors go to the protocol, as a network's would
            return True

        return to_transport
    raw = socket.extra(SocketAttribute.raw_socket, None)
    if raw is None:
        return None

    def to_socket(data: bytes, address: tuple[str, int]) -> bool:
        try:
            raw.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:  # e.g. ICMP port unreachable surfaced on send
            log.debug("datagram to %s:%s not sent: %s", address[0], address[1], exc)
        return True

    return to_socket


class DatagramSender:
    def __init__(self, socket: Any, max_queued: int = 10_000) -> None:
        self._socket = socket
        self._direct = direct_sendto(socket)
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._max_queued = max_queued
        self._wake = anyio.Event()
        self.dropped = 0  # queue full: dropped, as the network might have

    @property
    def queued(self) -> int:
        """Datagrams waiting for room in the socket."""
        return len(self._queue)

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        queue = self._queue
        if not queue and self._direct is not None and self._direct(data, address):
            return
        if len(queue) >= self._max_queued:
            self.dropped += 1
            return
        queue.append((data, address))
        self._wake.set()

    async def run(self) -> None:
        queue = self._queue
        while True:
            while queue:
                data, (host, port) = queue[0]
                try:
                    await self._socket.sendto(data, host, port)
                except _GONE:
                    return
                except OSError as exc:  # e.g. ICMP port unreachable surfaced on send
                    log.debug("datagram to %s:%s not sent: %s", host, port, exc)
                # Popped once sent: while it is in the queue, send() queues behind it.
                queue.popleft()
            self._wake = anyio.Event()
            await self._wake.wait()
