"""Entry point of the `jesus` group: contributes the `zmq` transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jesus import hookimpl
from jesus_zmq.transport import ZmqTransport


@hookimpl
def jesus_register_transports(register: Callable[[Any], None]) -> None:
    register(ZmqTransport())
