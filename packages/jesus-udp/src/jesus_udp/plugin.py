"""Entry point of the `jesus` group: contributes the `udp` transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jesus import hookimpl
from jesus_udp.transport import UdpTransport


@hookimpl
def jesus_register_transports(register: Callable[[Any], None]) -> None:
    register(UdpTransport())
