"""The tcp and unix transports against the transport conformance suite."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import anyio

import jesus
from jesus.protocol.frames import FrameType, encode_frame
from jesus.testing.transport import TransportConformance

HELLO = encode_frame(
    FrameType.HELLO,
    0,
    0,
    json.dumps({"protocol": "jesus", "version": 1, "codec": "msgpack"}).encode(),
)
PING = encode_frame(FrameType.PING, 0, 0, b"\0" * 8)


class TestTcp(TransportConformance):
    channel = "tcp+msgpack"
    compressed_channel = "tcp+msgpack+zstd"
    modes = frozenset(jesus.ResponseMode)
    tls = True
    cancel = True
    flood_opening, flood_unit = HELLO, PING

    async def connect_raw(self, node: jesus.Node) -> Any:
        url = urlsplit(node.endpoints["tcp"])  # tcp://127.0.0.1:PORT[?tls=1]
        assert url.hostname is not None and url.port is not None
        return await anyio.connect_tcp(url.hostname, url.port)

    async def test_a_tls_endpoint_says_so(self, registry: str) -> None:
        """Callers learn from the registry that they must use TLS (`?tls=1`)."""
        import ssl

        import trustme

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        trustme.CA().issue_cert("127.0.0.1").configure_cert(ctx)
        svc, _ = self.service()
        async with jesus.serve(svc, registry=registry, ssl_context=ctx) as node:
            assert node.endpoints["tcp"].endswith("?tls=1")


class TestUnix(TransportConformance):
    channel = "unix+msgpack"
    compressed_channel = "unix+json+zstd"
    modes = frozenset(jesus.ResponseMode)
    tls = False
    local = True  # the socket file is 0600: TLS is not needed
    cancel = True
    flood_opening, flood_unit = HELLO, PING

    async def connect_raw(self, node: jesus.Node) -> Any:
        path = urlsplit(node.endpoints["unix"]).path  # unix:///path/to.sock
        return await anyio.connect_unix(path)
