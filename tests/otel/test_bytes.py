"""Bytes per channel and method, both directions, on both ends, as the transports count them
(jesus.transport.traffic) and jesus-otel reports them, over real sockets."""

from __future__ import annotations

import base64
import os
import secrets
from typing import Any

import pytest

import jesus
from tests.otel.conftest import Recorded

pytestmark = pytest.mark.anyio

CHANNELS = ["tcp+msgpack", "udp+msgpack", "http+json", "zmq+msgpack"]
STREAMING = ["tcp+msgpack", "http+json", "zmq+msgpack"]
# Within one datagram (udp's max_datagram_size is 8 KiB), large beside the envelope.
LARGE = 5000


def sized(channel: str) -> jesus.Service:
    """A service of a name of its own: the counts are the process's since it started."""
    svc = jesus.Service(f"bytes{secrets.token_hex(4)}", channel=channel)

    @svc.method()
    async def take(data: str) -> int:
        return len(data)

    @svc.method()
    async def give(data: int) -> str:
        # Random: an http server compresses what it can (the bytes count as they travel).
        return base64.b64encode(os.urandom(data))[:data].decode()

    @svc.method()
    async def boom(data: Any) -> Any:
        raise ValueError("kaput")

    if not channel.startswith("udp"):

        @svc.method(mode="stream")
        async def items(data: int) -> Any:
            for _ in range(data):
                yield "y" * 100

    return svc


class Bytes:
    def __init__(self, otel: Recorded, svc: jesus.Service) -> None:
        self.otel = otel
        self.name = svc.name

    def __call__(self, metric: str, method: str) -> int:
        """The count of `metric` for `method`, 0 before any."""
        points = [
            p
            for p in self.otel.points(f"jesus.{metric}.size")
            if p.attributes.get("rpc.method") == f"{self.name}/{method}"
        ]
        assert len(points) <= 1, [dict(p.attributes) for p in points]
        return int(points[0].value) if points else 0


@pytest.mark.parametrize("channel", CHANNELS)
async def test_requests_count_at_least_their_payload_on_both_ends(
    running: Any, otel: Recorded, channel: str
) -> None:
    svc = sized(channel)
    count = Bytes(otel, svc)
    async with running(svc) as (_, client):
        assert await client.call(f"{svc.name}.take", "z" * LARGE) == LARGE
    sent, received = count("client.request", "take"), count("server.request", "take")
    # The envelope (method, meta) comes on top; over http the meta travels in headers.
    assert LARGE <= sent < LARGE + 400, sent
    assert LARGE <= received < LARGE + 400, received
    point = otel.points("jesus.server.request.size")
    (mine,) = [p for p in point if p.attributes["rpc.method"] == f"{svc.name}/take"]
    assert mine.attributes["jesus.channel"] == f"{channel}+none"
    assert mine.attributes["rpc.system.name"] == "jesus"
    # Its small answer, both ways.
    assert 0 < count("server.response", "take") < 100
    assert 0 < count("client.response", "take") < 100


@pytest.mark.parametrize("channel", CHANNELS)
async def test_response_bytes_grow_with_the_answer(
    running: Any, otel: Recorded, channel: str
) -> None:
    svc = sized(channel)
    count = Bytes(otel, svc)
    async with running(svc) as (_, client):
        assert len(await client.call(f"{svc.name}.give", 10)) == 10
        small = count("server.response", "give"), count("client.response", "give")
        assert len(await client.call(f"{svc.name}.give", LARGE)) == LARGE
        large = count("server.response", "give"), count("client.response", "give")
        with pytest.raises(jesus.RemoteFailure):
            await client.call(f"{svc.name}.boom")
    assert all(0 < n < 100 for n in small), small
    grown = [after - before for before, after in zip(small, large, strict=True)]
    # Base64 of random bytes compresses by a quarter at most (http compresses it).
    least = LARGE * 3 // 4 if channel.startswith("http") else LARGE
    assert all(least <= n < LARGE + 100 for n in grown), (small, large)
    assert count("server.response", "boom") > 0  # an error is an answer too
    if channel.startswith(("tcp", "zmq")):  # a frame's payload, on both ends
        assert count("client.request", "give") == count("server.request", "give")


@pytest.mark.parametrize("channel", STREAMING)
async def test_stream_items_count_on_both_ends(running: Any, otel: Recorded, channel: str) -> None:
    svc = sized(channel)
    count = Bytes(otel, svc)
    async with running(svc) as (_, client):
        seen = [item async for item in client.stream(f"{svc.name}.items", 200)]
    assert seen == ["y" * 100] * 200
    sent, received = count("server.response", "items"), count("client.response", "items")
    # 100 bytes an item, and a little framing each (many items go in one frame).
    assert 20_000 <= sent < 30_000, sent
    assert 20_000 <= received <= sent, (received, sent)


@pytest.mark.parametrize("channel", ["tcp+msgpack", "udp+msgpack", "http+json"])
async def test_an_event_counts_under_its_listener_method(
    running: Any, otel: Recorded, channel: str
) -> None:
    emitter = jesus.Service(f"shop{secrets.token_hex(4)}", channel=channel)
    listener = jesus.Service(f"audit{secrets.token_hex(4)}", channel=channel)
    got: list[str] = []

    @listener.listener("order.*")
    async def note(data: str) -> None:
        got.append(data)

    async with running(emitter, listener):
        assert await emitter.emit("order.placed", "p" * LARGE, mode="ack") == [listener.name]
    assert got == ["p" * LARGE]
    count = Bytes(otel, listener)
    assert count("client.request", "~order.*") >= LARGE  # the emitter's end
    assert count("server.request", "~order.*") >= LARGE
    assert count("server.response", "~order.*") == count("client.response", "~order.*")
