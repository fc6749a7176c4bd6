"""The `udp` transport: `udp://host:port`, one message per datagram."""

from __future__ import annotations

import contextlib
import socket as stdlib_socket
from typing import Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup

from jesus.errors import ConfigurationError
from jesus.transport import CallHandler, TransportOptions
from jesus_udp.client import UdpClient
from jesus_udp.server import MODES, UdpServer


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    parts = urlsplit(endpoint)
    if parts.scheme != "udp" or parts.hostname is None or parts.port is None:
        raise ConfigurationError(f"udp endpoint {endpoint!r} must be udp://host:port")
    return parts.hostname, parts.port


def parse_bind(bind: str | None) -> tuple[str, int]:
    if not bind:
        return "127.0.0.1", 0
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"udp bind address {bind!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


class UdpTransport:
    """Carries noResponse, ack and response; stream needs a stream transport (tcp, unix)."""

    scheme = "udp"
    modes = MODES
    tls = False
    local = False

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> UdpServer:
        host, port = parse_bind(bind)
        socket = await anyio.create_udp_socket(local_host=host, local_port=port)
        _widen_receive_buffer(socket.extra(anyio.abc.SocketAttribute.raw_socket))
        local: Any = socket.extra(anyio.abc.SocketAttribute.local_address)
        bound_host, bound_port = local[0], local[1]
        host_text = f"[{bound_host}]" if ":" in bound_host else bound_host
        return UdpServer(socket, f"udp://{host_text}:{bound_port}", handler, options)

    def client(self, options: TransportOptions, task_group: TaskGroup) -> Any:
        return UdpClient(options, task_group)


# Datagrams that arrive while the server is busy wait in the kernel's receive buffer, and are
# dropped once it is full: the default (about 200 KiB) holds a few milliseconds of a burst.
RECEIVE_BUFFER = 4 * 1024 * 1024


def _widen_receive_buffer(sock: stdlib_socket.socket) -> None:
    """Ask for RECEIVE_BUFFER bytes (the kernel caps it at net.core.rmem_max)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_RCVBUF, RECEIVE_BUFFER)
