"""Entry point of the `jesus` group: contributes the `tcp` and `unix` transports."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jesus import hookimpl
from jesus_tcp.transport import TcpTransport, UnixTransport


@hookimpl
def jesus_register_transports(register: Callable[[Any], None]) -> None:
    register(TcpTransport())
    register(UnixTransport())
