"""Hostile bytes against a live server: each gets an error or a closed connection, and a
well-behaved client on another connection keeps getting answers throughout."""

from __future__ import annotations

import json
import os
import random
import struct
from typing import Any

import anyio
import pytest
import zstandard

import jesus
from jesus.codecs.msgpack import MsgpackCodec
from jesus.protocol.frames import FrameDecoder, FrameType, encode_frame
from tests.helpers import wait_until
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio

HELLO = encode_frame(
    FrameType.HELLO,
    0,
    0,
    json.dumps(
        {"protocol": "jesus", "version": 1, "codec": "msgpack", "compression": "zstd"}
    ).encode(),
)


async def connect(node: jesus.Node) -> Any:
    host, port = node.endpoints["tcp"].removeprefix("tcp://").rsplit(":", 1)
    return await anyio.connect_tcp(host, int(port))


async def handshaken(node: jesus.Node) -> Any:
    """A raw connection past the handshake."""
    stream = await connect(node)
    await stream.send(HELLO)
    await read_frames(stream)
    return stream


async def read_frames(
    stream: Any, want: int = 1, timeout: float = 5
) -> list[tuple[int, int, int, bytes]]:
    """Frames until `want` arrived or the server closed the connection."""
    decoder = FrameDecoder(1 << 20)
    frames: list[tuple[int, int, int, bytes]] = []
    with anyio.fail_after(timeout):
        while len(frames) < want:
            try:
                frames += decoder.feed(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return frames


async def closed_by_server(stream: Any) -> bool:
    with anyio.fail_after(5):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return True
    return False


async def still_serving(client: jesus.Client) -> None:
    assert await client.call("calc.add", {"a": 20, "b": 22}) == 42


def request(sid: int, payload: bytes, flags: int = 2 << 4) -> bytes:
    return encode_frame(FrameType.REQUEST, flags, sid, payload)


GARBAGE = {
    "random bytes": random.Random(7).randbytes(4096),  # fixed: the same bytes every run
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "length prefix of 4 GiB": struct.pack("!IBBI", 0xFFFFFFFF, FrameType.HELLO, 0, 0),
    "unknown frame type": encode_frame(0x7E, 0, 0, b""),
    "truncated frame then close": encode_frame(FrameType.HELLO, 0, 0, b"{" * 100)[:50],
    "hello that is not json": encode_frame(FrameType.HELLO, 0, 0, b"\xff\xfe"),
}


@pytest.mark.parametrize("name", list(GARBAGE))
async def test_garbage_before_the_handshake(running: Any, name: str) -> None:
    svc, _ = calculator()
    async with running(svc) as (node, client):
        await still_serving(client)
        stream = await connect(node)
        await stream.send(GARBAGE[name])
        if name.startswith("truncated"):
            await stream.send_eof()
        assert await closed_by_server(stream)
        await still_serving(client)


@pytest.mark.parametrize("name", ["random bytes", "length prefix of 4 GiB", "unknown frame type"])
async def test_garbage_after_the_handshake_gets_an_error_frame(running: Any, name: str) -> None:
    svc, _ = calculator()
    async with running(svc) as (node, client):
        stream = await connect(node)
        await stream.send(HELLO)
        assert (await read_frames(stream))[0][0] == FrameType.HELLO
        await stream.send(GARBAGE[name])
        frames = await read_frames(stream)
        # Random bytes may instead start a frame that never completes: then the connection
        # just waits; the other two always get an error.
        if name != "random bytes" or frames:
            ftype, _, sid, payload = frames[0]
            assert (ftype, sid) == (FrameType.ERROR, 0)
            assert json.loads(payload)["code"] in ("PROTOCOL_ERROR", "TOO_LARGE")
        await still_serving(client)


async def test_invalid_envelopes_get_per_call_errors_on_a_live_connection(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (node, client):
        stream = await handshaken(node)
        codec = MsgpackCodec()
        bomb = zstandard.ZstdCompressor().compress(b"\0" * (100 * 1024 * 1024))
        await stream.send(
            request(1, b"\xc1\xc1\xc1")  # not msgpack
            + request(2, codec.encode({"not": "a list"}))
            + request(3, codec.encode(["calc.add", {"c": "x"}, {"a": 1, "b": 2}]))  # valid
            + request(4, codec.encode(["calc.add", "meta must be a map", {}]))
            + request(5, codec.encode(["calc.nope", {"c": "y"}, None]))
            + request(6, bomb, flags=(2 << 4) | 0x01)  # decompression bomb
            + request(7, b"\x28\xb5\x2f\xfd garbage", flags=(2 << 4) | 0x01)  # corrupt zstd
        )
        frames = {sid: (ftype, payload) for ftype, _, sid, payload in await read_frames(stream, 7)}
        codes = {
            sid: json.loads(p)["code"] for sid, (t, p) in frames.items() if t == FrameType.ERROR
        }
        assert codes == {
            1: "PROTOCOL_ERROR",
            2: "PROTOCOL_ERROR",
            4: "INVALID_REQUEST",
            5: "UNKNOWN_METHOD",
            6: "TOO_LARGE",
            7: "PROTOCOL_ERROR",
        }
        assert frames[3] == (FrameType.RESPONSE, codec.encode(3))
        # the same connection still works after all that
        await stream.send(request(8, codec.encode(["calc.add", {"c": "z"}, {"a": 2, "b": 2}])))
        (frame,) = await read_frames(stream)
        assert frame[0] == FrameType.RESPONSE and frame[3] == codec.encode(4)
        await still_serving(client)


async def test_oversized_message_fails_at_the_sender_and_the_server(running: Any) -> None:
    svc, _ = calculator()
    limits = jesus.Limits(max_message_size=100_000)
    async with running(svc, limits=limits, client={"limits": limits}) as (node, client):
        with pytest.raises(jesus.TooLarge):
            await client.call("calc.echo", os.urandom(200_000).hex())
        await still_serving(client)
        # A peer that ignores the announced limit is cut off with TOO_LARGE.
        stream = await handshaken(node)
        await stream.send(request(1, b"\0" * 200_000))
        (frame,) = await read_frames(stream)
        assert frame[0] == FrameType.ERROR and json.loads(frame[3])["code"] == "TOO_LARGE"
        assert await closed_by_server(stream)
        await still_serving(client)


async def test_a_flood_of_connections_is_capped(running: Any) -> None:
    svc, _ = calculator()
    limits = jesus.Limits(max_connections=20)
    async with running(svc, limits=limits) as (node, client):
        await still_serving(client)  # the client's own connection is one of the 20
        idle = [await connect(node) for _ in range(60)]
        refused = 0
        for stream in idle[19:]:
            frames = await read_frames(stream, timeout=5)
            if frames and frames[0][0] == FrameType.ERROR:
                assert json.loads(frames[0][3])["code"] == "UNAVAILABLE"
                refused += 1
        assert refused == 60 - 19
        await still_serving(client)
        for stream in idle:
            await stream.aclose()
        # once the flood is gone, new clients get in again
        async with jesus.Client(client.resolver.backend.url) as fresh:
            await still_serving(fresh)


async def test_a_silent_connection_is_dropped_after_the_handshake_timeout(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc, limits=jesus.Limits(handshake_timeout=0.3)) as (node, client):
        stream = await connect(node)
        assert await closed_by_server(stream)
        await still_serving(client)


async def test_too_many_calls_in_flight_get_unavailable(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc, limits=jesus.Limits(max_inflight_calls=4)) as (node, client):
        stream = await handshaken(node)
        codec = MsgpackCodec()
        await stream.send(
            b"".join(
                request(i, codec.encode(["calc.sleep", {"c": str(i)}, 0.5])) for i in range(1, 11)
            )
        )
        frames = await read_frames(stream, 10)
        codes = sorted(json.loads(p)["code"] for t, _, _, p in frames if t == FrameType.ERROR)
        assert codes == ["UNAVAILABLE"] * 6
        assert sum(1 for t, *_ in frames if t == FrameType.RESPONSE) == 4
        await still_serving(client)


async def test_keepalive_pings_keep_an_idle_connection_and_silent_peers_are_dropped(
    running: Any,
) -> None:
    svc, _ = calculator()
    limits = jesus.Limits(keepalive_interval=0.2)
    async with running(svc, limits=limits, client={"limits": limits}) as (node, client):
        await still_serving(client)
        (pool,) = client._transports.values()
        (conn,) = pool._pool.values()  # type: ignore[attr-defined]
        await anyio.sleep(1.0)  # past the server's 3 x 0.2 s silence limit: pings kept it up
        await still_serving(client)
        assert list(pool._pool.values()) == [conn]  # type: ignore[attr-defined]
        # A peer that handshakes and then stays silent is dropped.
        stream = await handshaken(node)
        started = anyio.current_time()
        assert await closed_by_server(stream)
        assert anyio.current_time() - started < 3
        # The server pings back: a PING gets its PONG.
        stream = await connect(node)
        await stream.send(HELLO + encode_frame(FrameType.PING, 0, 0, b"12345678"))
        frames = await read_frames(stream, 2)
        assert frames[1] == (FrameType.PONG, 0, 0, b"12345678")


async def test_a_reused_stream_id_leaves_the_new_call_cancellable(running: Any) -> None:
    """PROTOCOL.md lets a client reuse the id of a noResponse call at once: the old call
    ending must not release the id the new call holds."""
    svc, state = calculator()
    async with running(svc) as (node, client):
        stream = await handshaken(node)
        codec = MsgpackCodec()
        await stream.send(
            request(7, codec.encode(["calc.sleep", {"c": "a"}, 0.2]), flags=0)  # noResponse
            + request(7, codec.encode(["calc.sleep", {"c": "b"}, 30]))  # response, same id
        )
        await anyio.sleep(0.4)  # the noResponse call is over
        await stream.send(encode_frame(FrameType.CANCEL, 0, 7))
        await wait_until(lambda: state["cancelled"] == 1)
        await still_serving(client)


async def test_max_inflight_calls_counts_calls_that_share_a_stream_id(running: Any) -> None:
    svc, _ = calculator()
    async with running(svc, limits=jesus.Limits(max_inflight_calls=2)) as (node, client):
        stream = await handshaken(node)
        codec = MsgpackCodec()
        # Two noResponse calls on one id fill the limit: a third call is refused.
        await stream.send(
            request(1, codec.encode(["calc.sleep", {"c": "a"}, 0.5]), flags=0)
            + request(1, codec.encode(["calc.sleep", {"c": "b"}, 0.5]), flags=0)
            + request(2, codec.encode(["calc.add", {"c": "c"}, {"a": 1, "b": 1}]))
        )
        (frame,) = await read_frames(stream)
        assert frame[0] == FrameType.ERROR and json.loads(frame[3])["code"] == "UNAVAILABLE"
        await still_serving(client)


@pytest.mark.parametrize("window", ["lots", -1, True])
async def test_a_bad_hello_value_is_answered_not_dropped(running: Any, window: Any) -> None:
    svc, _ = calculator()
    async with running(svc) as (node, client):
        stream = await connect(node)
        hello = {"protocol": "jesus", "version": 1, "codec": "msgpack", "stream_window": window}
        await stream.send(encode_frame(FrameType.HELLO, 0, 0, json.dumps(hello).encode()))
        (frame,) = await read_frames(stream)
        error = json.loads(frame[3])
        assert (frame[0], frame[2], error["code"]) == (FrameType.ERROR, 0, "PROTOCOL_ERROR")
        assert "stream_window" in error["message"]
        assert await closed_by_server(stream)
        await still_serving(client)


async def test_nothing_is_lost_when_notifies_outrun_max_inflight_calls(running: Any) -> None:
    """A noResponse call past max_inflight_calls has nobody to be told of its refusal: the
    server stops reading that peer until a call ends, and TCP slows the sender down."""
    svc = jesus.Service("slow")
    done: list[int] = []

    @svc.method(mode="noResponse", request={"type": "integer"})
    async def work(n: int) -> None:
        await anyio.sleep(0.02)
        done.append(n)

    @svc.method()
    async def ping(data: Any) -> str:
        return "pong"

    limits = jesus.Limits(max_inflight_calls=4)
    async with running(svc, limits=limits) as (node, client):
        for n in range(40):
            await client.notify("slow.work", n)
        # Straight on the wire too, all in one write: the server reads them as one batch.
        stream = await handshaken(node)
        codec = MsgpackCodec()
        await stream.send(
            b"".join(
                request(n, codec.encode(["slow.work", {"c": str(n)}, 100 + n]), flags=0)
                for n in range(1, 41)
            )
        )
        await wait_until(lambda: len(done) == 80, timeout=20)
        assert sorted(done) == list(range(40)) + list(range(101, 141))
        # A handler that appended may not have returned yet: its slot frees a moment later,
        # and until then a call is refused (UNAVAILABLE, as past the limit).
        with anyio.fail_after(5):
            while True:
                try:
                    assert await client.call("slow.ping") == "pong"
                    break
                except jesus.Unavailable:
                    await anyio.sleep(0.01)
