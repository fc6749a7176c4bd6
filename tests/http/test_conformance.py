"""The http transport against the transport conformance suite."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anyio

import jesus
from jesus.testing.transport import TransportConformance


class TestHttp(TransportConformance):
    channel = "http+json"
    compressed_channel = "http+msgpack+zstd"
    modes = frozenset(jesus.ResponseMode)
    tls = True
    cancel = True
    credit = False  # HTTP/1.1 streams are held back by TCP, not by a credit window
    flood_unit = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"  # pipelined, never read

    async def connect_raw(self, node: jesus.Node) -> Any:
        url = urlsplit(node.endpoints["http"])  # http://127.0.0.1:PORT
        assert url.hostname is not None and url.port is not None
        return await anyio.connect_tcp(url.hostname, url.port)

    async def test_a_tls_endpoint_is_https(self, registry: str) -> None:
        import ssl

        import trustme

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("127.0.0.1").configure_cert(ctx)
        svc, _ = self.service()
        async with jesus.serve(svc, registry=registry, ssl_context=ctx) as node:
            assert node.endpoints["http"].startswith("https://127.0.0.1:")
