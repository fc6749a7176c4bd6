"""The `http` transport: `http://host:port` (`https://` with TLS)."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream, TaskGroup

from jesus.errors import ConfigurationError
from jesus.messages import ResponseMode
from jesus.transport import CallHandler, TransportOptions, tls_listener
from jesus_http.client import HttpClient
from jesus_http.server import HttpServer


def parse_bind(bind: str | None) -> tuple[str, int]:
    if not bind:
        return "127.0.0.1", 0
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"http bind address {bind!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpTransport:
    """HTTP/1.1 with keep-alive; TLS (mutual TLS when the server context requires client
    certificates) when a server `ssl_context` is given."""

    scheme = "http"
    modes = frozenset(ResponseMode)
    tls = True
    local = False

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> HttpServer:
        host, port = parse_bind(bind)
        listener: Any = await anyio.create_tcp_listener(local_host=host, local_port=port)
        local: Any = listener.extra(anyio.abc.SocketAttribute.local_address)
        scheme = "http"
        if options.ssl_context is not None:
            listener = tls_listener(listener, options.ssl_context, options.limits.handshake_timeout)
            scheme = "https"
        host_text = f"[{local[0]}]" if ":" in local[0] else local[0]
        return HttpServer(listener, f"{scheme}://{host_text}:{local[1]}", handler, options)

    def client(self, options: TransportOptions, task_group: TaskGroup) -> HttpClient:
        async def connect(endpoint: str) -> ByteStream:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname or not parts.port:
                raise ConfigurationError(f"http endpoint {endpoint!r} must be http(s)://host:port")
            if parts.scheme == "http":
                return await anyio.connect_tcp(parts.hostname, parts.port)
            context = options.ssl_context or ssl.create_default_context()
            return await anyio.connect_tcp(
                parts.hostname, parts.port, ssl_context=context, tls_standard_compatible=False
            )

        return HttpClient(connect, options, task_group)
