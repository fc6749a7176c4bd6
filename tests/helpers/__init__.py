"""Helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream


async def wait_until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll `condition` until it holds; fail the test after `timeout` seconds."""
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def tcp_pair() -> tuple[ByteStream, ByteStream, Any]:
    """A connected tcp pair on loopback: (client side, server side, listener)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    client = await anyio.connect_tcp("127.0.0.1", port)
    server = await listener.listeners[0].accept()
    return client, server, listener
