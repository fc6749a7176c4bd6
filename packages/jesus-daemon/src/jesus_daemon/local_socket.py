"""The daemon's unix socket, speaking two protocols: the framed protocol of PROTOCOL.md and
its HTTP mapping (`curl --unix-socket`), each connection told by its first byte."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anyio

from jesus.transport import CallHandler, TransportOptions
from jesus.transport.sniff import Sniffer, frame_or_http
from jesus_http.server import HttpServer
from jesus_tcp.addresses import Address
from jesus_tcp.server import StreamServer
from jesus_tcp.transport import unix_listener


class LocalSocket:
    """A Server (jesus.transport.Server) made of the stream server and the HTTP server, both
    fed from one listener; closing it removes the socket file."""

    def __init__(self, path: str, framed: StreamServer, http: HttpServer) -> None:
        self.path = path
        self.endpoint = Address("unix", path=path).endpoint()
        self.framed = framed
        self.http = http

    async def serve(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.framed.serve)
            tg.start_soon(self.http.serve)

    async def aclose(self) -> None:
        await self.framed.aclose()
        await self.http.aclose()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


async def open_local_socket(
    path: str, mode: int, handler: CallHandler, options: TransportOptions
) -> LocalSocket:
    listener: Any = await unix_listener(path, mode)
    sniffer = Sniffer(listener, frame_or_http, options.limits.handshake_timeout)
    endpoint = Address("unix", path=path).endpoint()
    return LocalSocket(
        path,
        StreamServer(sniffer.branch("frames"), endpoint, handler, options),
        HttpServer(sniffer.branch("http"), endpoint, handler, options),
    )
