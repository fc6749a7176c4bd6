"""The `tcp` and `unix` transports: the same protocol over two kinds of socket."""

from __future__ import annotations

import contextlib
import os
import ssl
from typing import Any

import anyio
from anyio.abc import ByteStream, TaskGroup

from jesus.errors import ConfigurationError
from jesus.messages import ResponseMode
from jesus.transport import CallHandler, TransportOptions, tls_listener
from jesus_tcp.addresses import Address, default_unix_path, parse_endpoint, parse_tcp_bind
from jesus_tcp.client import StreamClient
from jesus_tcp.server import StreamServer
from jesus_tcp.unix_reads import guard_unix_reads

guard_unix_reads()

ALL_MODES = frozenset(ResponseMode)


class TcpTransport:
    """`tcp://host:port`; TLS (mutual TLS when the server context requires client
    certificates) when a server `ssl_context` is given."""

    scheme = "tcp"
    modes = ALL_MODES
    tls = True
    local = False

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> StreamServer:
        host, port = parse_tcp_bind(bind)
        listener: Any = await anyio.create_tcp_listener(local_host=host, local_port=port)
        bound_host, bound_port = listener.extra(anyio.abc.SocketAttribute.local_address)[:2]
        tls = options.ssl_context is not None
        if options.ssl_context is not None:
            listener = tls_listener(listener, options.ssl_context, options.limits.handshake_timeout)
        endpoint = Address("tcp", host=bound_host, port=bound_port, tls=tls).endpoint()
        return StreamServer(listener, endpoint, handler, options)

    def client(self, options: TransportOptions, task_group: TaskGroup) -> StreamClient:
        async def connect(endpoint: str) -> ByteStream:
            address = parse_endpoint(endpoint)
            if address.scheme != "tcp":
                raise ConfigurationError(f"{endpoint!r} is not a tcp endpoint")
            if not address.tls:
                return await anyio.connect_tcp(address.host, address.port)
            context = options.ssl_context or ssl.create_default_context()
            return await anyio.connect_tcp(
                address.host, address.port, ssl_context=context, tls_standard_compatible=False
            )

        return StreamClient(connect, options, task_group)


class UnixTransport:
    """`unix:///path/to.sock`: the tcp protocol without the network stack, for one machine
    (and, later, the per-node daemon)."""

    scheme = "unix"
    modes = ALL_MODES
    tls = False
    # Reached only from this machine, through a socket file only its owner may open (0600).
    local = True

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> StreamServer:
        path = bind or default_unix_path()
        listener = await unix_listener(path)
        return _UnixServer(listener, Address("unix", path=path).endpoint(), handler, options, path)

    def client(self, options: TransportOptions, task_group: TaskGroup) -> StreamClient:
        async def connect(endpoint: str) -> ByteStream:
            address = parse_endpoint(endpoint)
            if address.scheme != "unix":
                raise ConfigurationError(f"{endpoint!r} is not a unix endpoint")
            return await anyio.connect_unix(address.path)

        return StreamClient(connect, options, task_group)


async def unix_listener(path: str, mode: int = 0o600) -> Any:
    """A listener on the socket file `path`, created with `mode`; a stale file left by a
    process that died is replaced, a live server's is not."""
    await _remove_stale_socket(path)
    return await anyio.create_unix_listener(path, mode=mode)


async def _remove_stale_socket(path: str) -> None:
    """A socket file nobody accepts on was left by a process that died: remove it. One that
    still accepts belongs to a live server, which we must not steal from."""
    try:
        probe = await anyio.connect_unix(path)
    except FileNotFoundError:
        return
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    await probe.aclose()
    raise ConfigurationError(f"unix socket {path} is in use by a running server")


class _UnixServer(StreamServer):
    def __init__(
        self,
        listener: Any,
        endpoint: str,
        handler: CallHandler,
        options: TransportOptions,
        path: str,
    ) -> None:
        super().__init__(listener, endpoint, handler, options)
        self._path = path

    async def aclose(self) -> None:
        await super().aclose()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
