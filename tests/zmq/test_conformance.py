"""The zmq transport against the transport conformance suite."""

from __future__ import annotations

import jesus
from jesus.testing.transport import TransportConformance
from tests.zmq.raw import exchange


class TestZmq(TransportConformance):
    channel = "zmq+msgpack"
    compressed_channel = "zmq+msgpack+zstd"
    modes = frozenset(jesus.ResponseMode)
    tls = False  # no TLS: CURVE protects zmq instead (tests/zmq/test_curve.py)
    cancel = True
    # No read-side flood check: one ROUTER socket reads every peer, so a server cannot stop
    # reading one of them. A peer that does not read its answers is dropped once twice
    # write_buffer_size of them wait (tests/zmq/test_bad_input.py proves it).
    flood_unit = b""

    async def send_raw(self, node: jesus.Node, data: bytes) -> bytes:
        """`data` as one ZMQ message from a fresh DEALER: whatever the bytes, one message."""
        return b"".join(await exchange(node, [data]))
