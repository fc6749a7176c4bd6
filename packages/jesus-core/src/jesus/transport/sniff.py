"""One listening socket, two protocols: each connection goes to the server of the protocol its
first bytes show. The node daemon's socket speaks the framed protocol and the HTTP mapping
(`curl --unix-socket`), told apart by the first byte: a frame starts with its length, whose
first byte is 0 for anything a HELLO can be, and an HTTP request with a method's letter.

`Sniffer(listener, classify)` hands out one `Listener` per protocol name (`branch(name)`);
give each to its server as if it were the socket's own listener.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from anyio.abc import ByteStream, Listener, TaskGroup

from jesus.transport.boundary import BROKEN

log = logging.getLogger("jesus.transport")
READ_SIZE = 65536


def frame_or_http(first: bytes) -> str:
    """ "frames" for the stream protocol, "http" for an HTTP request."""
    return "frames" if first[:1] == b"\x00" else "http"


class Sniffer:
    def __init__(
        self,
        listener: Listener[Any],
        classify: Callable[[bytes], str],
        timeout: float,
    ) -> None:
        self._listener = listener
        self._classify = classify
        self._timeout = timeout
        self._branches: dict[str, _Branch] = {}
        self._serving = False
        self._stopped = anyio.Event()

    def branch(self, name: str) -> Listener[ByteStream]:
        branch = self._branches[name] = _Branch(self, name)
        return branch

    async def _serve(self, task_group: TaskGroup | None) -> None:
        """Run by the first branch served; the others wait while it runs."""
        if self._serving:
            await self._stopped.wait()
            return
        self._serving = True
        try:
            await self._listener.serve(self._route, task_group=task_group)
        finally:
            self._stopped.set()

    async def _route(self, stream: Any) -> None:
        first = b""
        with anyio.move_on_after(self._timeout):
            try:
                first = await stream.receive(READ_SIZE)
            except BROKEN:
                pass
        branch = self._branches.get(self._classify(first)) if first else None
        if branch is None or branch.handler is None:
            await stream.aclose()
            return
        await branch.handler(Prefixed(stream, first))

    async def _closed(self) -> None:
        if all(b.closed for b in self._branches.values()):
            await self._listener.aclose()


class _Branch(Listener[ByteStream]):
    def __init__(self, sniffer: Sniffer, name: str) -> None:
        self._sniffer = sniffer
        self.name = name
        self.handler: Callable[[ByteStream], Any] | None = None
        self.closed = False

    async def serve(
        self, handler: Callable[[ByteStream], Any], task_group: TaskGroup | None = None
    ) -> None:
        self.handler = handler
        await self._sniffer._serve(task_group)

    async def aclose(self) -> None:
        self.handler = None
        self.closed = True
        await self._sniffer._closed()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._sniffer._listener.extra_attributes


class Prefixed(ByteStream):
    """A stream whose first bytes were read already (to tell its protocol): they come first."""

    def __init__(self, stream: ByteStream, first: bytes) -> None:
        self.transport_stream = stream  # where stop_reading_ahead finds the socket
        self._first = first

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        if self._first:
            data, self._first = self._first[:max_bytes], self._first[max_bytes:]
            return data
        return await self.transport_stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.transport_stream.send(item)

    async def send_eof(self) -> None:
        await self.transport_stream.send_eof()

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.transport_stream.extra_attributes
