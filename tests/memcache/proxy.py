"""A loopback TCP proxy in front of memcached that counts the bytes passing both ways: what a
registry operation costs on the wire, as its clients and memcached see it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketStream


class Counting:
    def __init__(self, port: int) -> None:
        self.port = port
        self.moved = 0
        self.open = 0  # connections open through it now

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


async def _pipe(source: SocketStream, sink: SocketStream, counter: Counting) -> None:
    try:
        async for chunk in source:
            counter.moved += len(chunk)
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass
    finally:
        await sink.aclose()


@asynccontextmanager
async def counting_proxy(target: str) -> AsyncIterator[Counting]:
    host, _, port = target.rpartition(":")
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    counter = Counting(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def handle(client: SocketStream) -> None:
        upstream = await anyio.connect_tcp(host, int(port))
        counter.open += 1
        try:
            async with client, upstream, anyio.create_task_group() as tg:
                tg.start_soon(_pipe, client, upstream, counter)
                tg.start_soon(_pipe, upstream, client, counter)
        finally:
            counter.open -= 1

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield counter
        tg.cancel_scope.cancel()
