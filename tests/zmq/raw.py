"""A raw DEALER peer for the tests: sends whatever it is given, one ZMQ message per part."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

import jesus
import zmq
from jesus.protocol.frames import FrameType, encode_frame
from jesus_zmq.addresses import zmq_address

HELLO = encode_frame(
    FrameType.HELLO,
    0,
    0,
    json.dumps({"protocol": "jesus", "version": 1, "codec": "msgpack"}).encode(),
)
PING = encode_frame(FrameType.PING, 0, 0, b"\0" * 8)


@asynccontextmanager
async def raw_dealer(node: jesus.Node) -> AsyncIterator[zmq.Socket[Any]]:
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(zmq_address(node.endpoints["zmq"]))
    try:
        yield sock
    finally:
        sock.close(linger=0)


async def receive_all(sock: zmq.Socket[Any], timeout: float = 1.0) -> list[list[bytes]]:
    """Every message that arrives within `timeout` (polled: the test needs no edge rules)."""
    received: list[list[bytes]] = []
    with anyio.move_on_after(timeout):
        while True:
            try:
                received.append(sock.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                await anyio.sleep(0.01)
    return received


async def exchange(node: jesus.Node, *messages: list[bytes], timeout: float = 1.0) -> list[bytes]:
    """Send each multipart message, return the frames that came back within `timeout`."""
    async with raw_dealer(node) as sock:
        for parts in messages:
            sock.send_multipart(parts)
        return [b"".join(m) for m in await receive_all(sock, timeout)]
