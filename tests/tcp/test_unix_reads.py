"""A unix read cancelled in the very turn of the loop in which its data arrives, as happens
when a connection is closed while the peer still sends (jesus_tcp.unix_reads)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus_tcp.transport  # noqa: F401  (guards anyio's unix reads on import)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_read_cancelled_as_its_data_arrives_reports_nothing(
    tmp_path: Path, anyio_backend: str
) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    path = str(tmp_path / "s.sock")
    async with (
        await anyio.create_unix_listener(path) as listener,
        await anyio.connect_unix(path) as client,
    ):
        server = await listener.accept()  # type: ignore[attr-defined]
        reading = asyncio.ensure_future(server.receive())
        while getattr(server, "_receive_future", None) is None:  # the read waits
            await asyncio.sleep(0)
        client.extra(anyio.abc.SocketAttribute.raw_socket).send(b"x")
        # Runs first in the next turn, just before the socket's reader callback.
        loop.call_soon(reading.cancel)
        await asyncio.sleep(0.05)
        assert reading.cancelled()
        assert errors == []
        # The connection reads on as before.
        assert await server.receive() == b"x"
        await server.aclose()
