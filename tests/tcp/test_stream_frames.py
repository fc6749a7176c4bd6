"""Stream frames on the wire, read from a live server by a raw client: what a client that
announces "items" gets, what one that does not gets, and how credit in items and bytes holds
the server back."""

from __future__ import annotations

import json
import struct
from typing import Any

import anyio
import pytest

from jesus.codecs.msgpack import MsgpackCodec
from jesus.protocol.frames import FrameDecoder, FrameType, encode_frame
from tests.helpers.services import calculator
from tests.tcp.test_bad_input import connect, read_frames, request, still_serving

pytestmark = pytest.mark.anyio

STREAM = 3 << 4
codec = MsgpackCodec()


def hello(**keys: Any) -> bytes:
    info = {"protocol": "jesus", "version": 1, "codec": "msgpack", **keys}
    return encode_frame(FrameType.HELLO, 0, 0, json.dumps(info).encode())


class Raw:
    """A raw client connection that keeps one frame decoder, so no frame is cut."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.decoder = FrameDecoder(1 << 20)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def frames_until_quiet(self, quiet: float = 0.3) -> list[tuple[int, int, bytes]]:
        """(type, stream, payload) of each frame that came before the server went quiet."""
        frames: list[tuple[int, int, bytes]] = []
        while True:
            with anyio.move_on_after(quiet) as waited:
                data = await self.stream.receive()
            if waited.cancelled_caught:
                return frames
            frames += [(ftype, sid, payload) for ftype, _, sid, payload in self.decoder.feed(data)]

    async def items_until_quiet(self) -> list[tuple[int, list[Any]]]:
        """(frame type, items) of each frame of stream 1 before the server went quiet."""
        frames: list[tuple[int, list[Any]]] = []
        for ftype, sid, payload in await self.frames_until_quiet():
            assert sid == 1
            if ftype == FrameType.ITEM:
                frames.append((ftype, [codec.decode(payload)]))
            elif ftype == FrameType.ITEMS:
                frames.append((ftype, codec.decode(payload)))
            else:
                frames.append((ftype, []))
        return frames


async def opened(node: Any, **keys: Any) -> tuple[Raw, dict[str, Any]]:
    """A raw connection past the handshake, and the server's HELLO."""
    raw = Raw(await connect(node))
    await raw.send(hello(**keys))
    with anyio.fail_after(5):
        while not (frames := await raw.frames_until_quiet(0.05)):
            pass
    ((ftype, _, payload),) = frames
    assert ftype == FrameType.HELLO
    return raw, json.loads(payload)


def count(n: int) -> bytes:
    return request(1, codec.encode(["calc.count", {"c": "x-1"}, {"n": n}]), flags=STREAM)


async def test_a_client_that_announces_items_gets_them_many_to_a_frame(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (node, client):
        raw, server_hello = await opened(node, capabilities=["items"], stream_window=1000)
        assert "items" in server_hello["capabilities"]
        await raw.send(count(500))
        frames = await raw.items_until_quiet()
        assert frames[-1] == (FrameType.END, [])
        items = [item for _, got in frames for item in got]
        assert items == list(range(500))
        assert frames[0] == (FrameType.ITEM, [0])  # the first item goes alone, at once
        assert any(ftype == FrameType.ITEMS for ftype, _ in frames)
        assert len(frames) < 100
        await still_serving(client)


async def test_a_client_that_does_not_announce_items_gets_one_item_a_frame(
    running: Any,
) -> None:
    """A peer written before ITEMS existed: single ITEMs, and 4-byte CREDITs are enough."""
    svc, _ = calculator()
    async with running(svc) as (node, client):
        raw, _ = await opened(node, stream_window=10)
        await raw.send(count(25))
        frames = await raw.items_until_quiet()
        assert frames == [(FrameType.ITEM, [i]) for i in range(10)]  # the window, no more
        await raw.send(encode_frame(FrameType.CREDIT, 0, 1, struct.pack("!I", 20)))
        frames = await raw.items_until_quiet()
        assert frames == [(FrameType.ITEM, [i]) for i in range(10, 25)] + [(FrameType.END, [])]
        await still_serving(client)


async def test_the_byte_window_stops_the_server_and_byte_credit_restarts_it(
    running: Any,
) -> None:
    svc, state = calculator()
    async with running(svc) as (node, client):
        # Room for 10,000 items but 64 bytes: a few small frames, then the server waits.
        raw, _ = await opened(
            node, capabilities=["items"], stream_window=10_000, stream_window_bytes=64
        )
        await raw.send(count(10_000))
        frames = await raw.items_until_quiet()
        sent = [item for _, got in frames for item in got]
        assert sent and sent == list(range(len(sent)))
        assert FrameType.END not in [ftype for ftype, _ in frames]
        assert len(sent) < 200  # 64 bytes and one frame past them, at most
        assert state["produced"] < 10_000
        # Item credit alone (a 4-byte CREDIT) gives no bytes: still nothing.
        await raw.send(encode_frame(FrameType.CREDIT, 0, 1, struct.pack("!I", 100)))
        assert await raw.items_until_quiet() == []
        # Bytes enough for the rest: the stream completes.
        await raw.send(encode_frame(FrameType.CREDIT, 0, 1, struct.pack("!II", 0, 1 << 30)))
        frames = await raw.items_until_quiet()
        assert frames[-1] == (FrameType.END, [])
        rest = [item for _, got in frames for item in got]
        assert sent + rest == list(range(10_000))
        await still_serving(client)


@pytest.mark.parametrize("payload", [b"", b"\0" * 6, b"\0" * 12])
async def test_a_credit_of_a_wrong_size_is_a_protocol_error(running: Any, payload: bytes) -> None:
    svc, _ = calculator()
    async with running(svc) as (node, client):
        raw, _ = await opened(node, capabilities=["items"])
        await raw.send(count(10**6))
        await raw.send(encode_frame(FrameType.CREDIT, 0, 1, payload))
        frames = await read_frames(raw.stream, want=10**9)  # until the server closes
        ftype, _, sid, body = frames[-1]
        assert (ftype, sid, json.loads(body)["code"]) == (FrameType.ERROR, 0, "PROTOCOL_ERROR")
        await still_serving(client)
