"""How the http transport reads: a response its consumer does not take is read no further
than READ_AHEAD (then reading resumes when asked), and header names a peer makes up fill no
memory past their bound."""

from __future__ import annotations

import contextlib

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from jesus.transport import TransportOptions
from jesus_http import mapping
from jesus_http import parser as parser_module
from jesus_http.client import READ_AHEAD, HttpClientConnection
from jesus_http.parser import RequestParser

pytestmark = pytest.mark.anyio

CHUNK = 65536


async def test_a_body_the_consumer_does_not_take_is_not_read_far_ahead() -> None:
    async def endless(stream: SocketStream) -> None:
        await stream.receive()
        await stream.send(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (CHUNK, b"x" * CHUNK)
        with contextlib.suppress(anyio.BrokenResourceError):  # until the client hangs up
            while True:
                await stream.send(chunk)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, endless)
        stream = await anyio.connect_tcp("127.0.0.1", port)
        conn = HttpClientConnection(stream, TransportOptions())
        with anyio.fail_after(5):
            await conn.send(b"POST /a/b HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
            head = await conn.read_head()
        await anyio.sleep(0.5)  # the server writes as fast as it can meanwhile
        # What one read more than the limit may bring (asyncio: 64 KiB; uvloop's own buffer).
        assert len(head.body) <= READ_AHEAD + 4 * CHUNK
        head.body.clear()  # taken by the consumer: reading goes on when asked
        with anyio.fail_after(5):
            await conn._receive()
        assert len(head.body) > 0
        await stream.aclose()
        tg.cancel_scope.cancel()


def test_header_names_a_peer_makes_up_fill_no_memory_past_their_bound() -> None:
    parser = RequestParser(65536, 1 << 20)
    for i in range(3 * parser_module._NAMES_KEPT):
        parser.feed(
            b"POST /a/b HTTP/1.1\r\nX-Made-Up-%d: v\r\nX-Twice: 1\r\nx-twice: 2\r\n"
            b"content-length: 0\r\n\r\n" % i
        )
        headers = parser.ready.popleft().headers
        assert headers[f"x-made-up-{i}"] == "v" and headers["x-twice"] == "1, 2"
    assert len(parser_module._NAMES) <= parser_module._NAMES_KEPT


def test_request_targets_a_peer_makes_up_fill_no_memory_past_their_bound() -> None:
    before = mapping._route.cache_info()
    long_target = "/a/" + "b" * 8000 + "?q=1"
    assert mapping.route_of(long_target) == ("/a/" + "b" * 8000, ("a", "b" * 8000))
    assert mapping._route.cache_info() == before  # a long target is never kept
    assert mapping.route_of("/calc/add?x=1") == ("/calc/add", ("calc", "add"))
    assert mapping.route_of("/calc/add?x=1") == ("/calc/add", ("calc", "add"))
    assert mapping._route.cache_info().hits > before.hits
    for i in range(1000):
        assert mapping.route_of(f"/svc/m{i}//") == (f"/svc/m{i}//", ("svc", f"m{i}"))
    assert mapping._route.cache_info().currsize <= 256


def test_a_body_s_content_encoding_names_the_first_compression_of_that_name() -> None:
    class Named:
        def __init__(self, name: str, content_encoding: str | None) -> None:
            self.name, self.content_encoding = name, content_encoding

    first, second, bare = Named("gz", "gzip"), Named("gz2", "gzip"), Named("raw", None)
    table = mapping.by_content_encoding({"gz": first, "gz2": second, "raw": bare})  # type: ignore[dict-item]
    assert table == {"gzip": first}
