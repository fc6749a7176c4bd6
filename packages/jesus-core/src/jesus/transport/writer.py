"""Coalescing writer for byte-stream transports: what any task queues goes out in as few
`send()` calls as possible."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.abc import ByteStream

from jesus.transport.boundary import BROKEN


class FrameWriter:
    """Frames are queued synchronously (`write`) and flushed by one task (`run`).

    When more than `high_water` bytes wait, `drain()` blocks its caller until the socket
    catches up, so a slow peer pushes back instead of growing the queue without bound.
    """

    def __init__(self, stream: ByteStream, high_water: int) -> None:
        self._stream = stream
        self._queue: list[bytes] = []
        self._queued = 0
        self._high_water = high_water
        self._wake = anyio.Event()
        self._drained = anyio.Event()
        self._idle = anyio.Event()  # set while nothing is queued or being sent
        self._idle.set()
        self.closed = False

    def write(self, frame: bytes) -> None:
        if self.closed:
            return
        self._queue.append(frame)
        self._queued += len(frame)
        if len(self._queue) == 1:
            self._wake.set()
            if self._idle.is_set():
                self._idle = anyio.Event()

    @property
    def full(self) -> bool:
        """True while senders should `await drain()` (checked first: most writes never wait)."""
        return self._queued > self._high_water and not self.closed

    async def drain(self) -> None:
        while self.full:
            await self._drained.wait()

    async def flush(self) -> None:
        """Wait until everything queued so far was handed to the socket (before closing)."""
        if not self.closed:
            await self._idle.wait()

    async def run(self, on_broken: Callable[[], None]) -> None:
        """Flush until the stream breaks (then call `on_broken`) or the task is cancelled."""
        try:
            while True:
                if not self._queue:
                    self._idle.set()
                    self._wake = anyio.Event()
                    await self._wake.wait()
                    continue
                data = b"".join(self._queue) if len(self._queue) > 1 else self._queue[0]
                self._queue.clear()
                self._queued = 0
                await self._stream.send(data)
                if self._queued <= self._high_water:
                    self._drained.set()
                    self._drained = anyio.Event()
        except BROKEN:
            on_broken()
        finally:
            self.closed = True
            self._drained.set()
            self._idle.set()
