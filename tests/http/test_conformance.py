"""The http transport against the transport conformance suite."""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio

import jesus
from jesus.testing.transport import TransportConformance, exchange


class TestHttp(TransportConformance):
    channel = "http+json"
    compressed_channel = "http+msgpack+zstd"
    modes = frozenset(jesus.ResponseMode)
    tls = True
    cancel = True
    credit = False  # HTTP/1.1 streams are held back by TCP, not by a credit window

    async def send_raw(self, node: jesus.Node, data: bytes) -> bytes:
        url = urlsplit(node.endpoints["http"])  # http://127.0.0.1:PORT
        assert url.hostname is not None and url.port is not None
        return await exchange(await anyio.connect_tcp(url.hostname, url.port), data)
