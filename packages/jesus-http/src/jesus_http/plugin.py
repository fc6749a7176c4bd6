"""Entry point of the `jesus` group: contributes the `http` transport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jesus import hookimpl
from jesus_http.transport import HttpTransport


@hookimpl
def jesus_register_transports(register: Callable[[Any], None]) -> None:
    register(HttpTransport())
