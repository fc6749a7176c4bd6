"""One task sends every datagram of a socket (anyio sockets take one sender at a time)."""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import anyio

log = logging.getLogger("jesus.udp")

_GONE = (anyio.BrokenResourceError, anyio.ClosedResourceError)


class DatagramSender:
    def __init__(self, socket: Any, max_queued: int = 10_000) -> None:
        self._socket = socket
        self._queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        self._max_queued = max_queued
        self._wake = anyio.Event()
        self.dropped = 0  # queue full: dropped, as the network might have

    def send(self, data: bytes, address: tuple[str, int]) -> None:
        if len(self._queue) >= self._max_queued:
            self.dropped += 1
            return
        self._queue.append((data, address))
        self._wake.set()

    async def run(self) -> None:
        queue = self._queue
        while True:
            while queue:
                data, (host, port) = queue.popleft()
                try:
                    await self._socket.sendto(data, host, port)
                except _GONE:
                    return
                except OSError as exc:  # e.g. ICMP port unreachable surfaced on send
                    log.debug("datagram to %s:%s not sent: %s", host, port, exc)
            self._wake = anyio.Event()
            await self._wake.wait()
