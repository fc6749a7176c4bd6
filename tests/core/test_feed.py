"""jesus.transport.feed: reads handed to a callback where the backend allows it (asyncio and
uvloop tcp), and None elsewhere, so that a transport keeps its read loop there."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from jesus.transport.feed import feed
from tests.helpers import tcp_pair

pytestmark = pytest.mark.anyio


def _on_asyncio(backend: Any) -> bool:
    return backend == "asyncio" or (isinstance(backend, tuple) and backend[0] == "asyncio")


async def test_reads_are_fed_on_asyncio_and_left_to_the_stream_elsewhere(
    anyio_backend: Any,
) -> None:
    client, server, listener = await tcp_pair()
    got: list[bytes] = []
    ended = anyio.Event()
    try:
        await client.send(b"before")  # read by anyio before the take-over: must not be lost
        assert await server.receive() == b"before"
        await client.send(b"queued")
        await anyio.sleep(0.05)
        fed = feed(server, got.append, ended.set)
        if not _on_asyncio(anyio_backend):
            assert fed is None  # trio: the transport keeps its read loop
            assert await server.receive() == b"queued"
            return
        assert fed is not None
        await client.send(b"after")
        with anyio.fail_after(5):
            while b"".join(got) != b"queuedafter":
                await anyio.sleep(0.01)
        # Writing still goes through the stream, back-pressure and all.
        await server.send(b"answer")
        assert await client.receive() == b"answer"
        # Paused, nothing is read; resumed, what waited arrives.
        fed.pause()
        await client.send(b"held")
        await anyio.sleep(0.1)
        assert b"".join(got) == b"queuedafter"
        fed.resume()
        with anyio.fail_after(5):
            while not b"".join(got).endswith(b"held"):
                await anyio.sleep(0.01)
        await client.aclose()
        with anyio.fail_after(5):
            await ended.wait()
    finally:
        await client.aclose()
        await server.aclose()
        await listener.aclose()


async def test_a_tls_stream_is_not_fed(anyio_backend: Any, tmp_path: Any) -> None:
    from anyio.streams.tls import TLSStream

    from jesus.security.devca import create_ca, credentials, issue

    create_ca(tmp_path)
    issue(tmp_path, "server", ("127.0.0.1",))
    creds = credentials(tmp_path, "server")
    client, server, listener = await tcp_pair()
    try:
        async with anyio.create_task_group() as tg:
            wrapped: list[TLSStream] = []

            async def accept() -> None:
                wrapped.append(await TLSStream.wrap(server, ssl_context=creds.server_context()))

            tg.start_soon(accept)
            tls_client = await TLSStream.wrap(
                client, hostname="127.0.0.1", ssl_context=creds.client_context()
            )
        assert feed(wrapped[0], lambda data: None, lambda: None) is None
        assert feed(tls_client, lambda data: None, lambda: None) is None
    finally:
        await client.aclose()
        await server.aclose()
        await listener.aclose()
