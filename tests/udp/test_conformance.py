"""The udp transport against the transport conformance suite: no streams, no TLS, and a
caller that gives up cannot tell the server (the call's deadline stops the handler)."""

from __future__ import annotations

from urllib.parse import urlsplit

import anyio

import jesus
from jesus.testing.transport import TransportConformance

MAX_DATAGRAM = 65_507  # the UDP payload limit over IPv4


class TestUdp(TransportConformance):
    channel = "udp+msgpack"
    compressed_channel = "udp+msgpack+zstd"
    modes = frozenset(
        {jesus.ResponseMode.NO_RESPONSE, jesus.ResponseMode.ACK, jesus.ResponseMode.RESPONSE}
    )
    tls = False
    cancel = False  # no connection carries a cancel: the deadline stops the handler
    connected = False

    async def send_raw(self, node: jesus.Node, data: bytes) -> bytes:
        url = urlsplit(node.endpoints["udp"])  # udp://127.0.0.1:PORT
        assert url.hostname is not None and url.port is not None
        received = b""
        data = data[:MAX_DATAGRAM]  # a 64 KiB blob: the largest datagram a peer can send
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as sock:
            await sock.sendto(data, url.hostname, url.port)
            with anyio.move_on_after(1.0):
                while True:  # garbage gets no answer: wait out the second
                    received += (await sock.receive())[0]
        return received
