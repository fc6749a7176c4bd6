"""What is particular to zeromq in bad input: multipart messages, messages that are not one
frame, messages past ZMQ_MAXMSGSIZE, a peer that vanishes and one that never reads. Each time
the server stays up and a good client is still served."""

from __future__ import annotations

from typing import Any

import anyio
import msgpack
import pytest

import jesus
import zmq
from jesus.protocol.frames import FrameType, encode_frame
from jesus.testing.transport import conformance_service, serving, wait_until
from tests.zmq.raw import HELLO, PING, exchange, raw_dealer, receive_all

pytestmark = pytest.mark.anyio
KiB = 1024
RESPONSE_MODE = 0x20  # REQUEST flags: mode 2 (response) in bits 4-5


def request(sid: int, method: str, data: Any) -> bytes:
    payload = msgpack.packb([method, {"c": f"raw-{sid}"}, data])
    return encode_frame(FrameType.REQUEST, RESPONSE_MODE, sid, payload)


def error_codes(frames: list[bytes]) -> list[tuple[int, str]]:
    """(stream, code) of each ERROR frame received."""
    import json

    return [
        (int.from_bytes(f[6:10]), json.loads(f[10:])["code"])
        for f in frames
        if f[4] == FrameType.ERROR
    ]


def service() -> tuple[jesus.Service, Any]:
    return conformance_service("zmq+msgpack", frozenset(jesus.ResponseMode))


async def still_serving(client: jesus.Client, registry: str) -> None:
    assert await client.call("conf.add", {"a": 20, "b": 22}) == 42
    async with jesus.Client(registry) as fresh:
        assert await fresh.call("conf.add", {"a": 2, "b": 2}) == 4


async def test_a_raw_peer_speaks_the_protocol_one_frame_per_message(registry: str) -> None:
    """The positive control for the tests below: HELLO, then a call, each its own message."""
    svc, _ = service()
    async with serving(registry, svc) as (node, _):
        frames = await exchange(node, [HELLO], [request(1, "conf.add", {"a": 1, "b": 2})])
        assert [f[4] for f in frames] == [FrameType.HELLO, FrameType.RESPONSE]
        assert msgpack.unpackb(frames[1][10:]) == 3


async def test_multipart_messages_are_dropped(registry: str) -> None:
    svc, _ = service()
    async with serving(registry, svc) as (node, client):
        server = node.servers["zmq"]
        frames = await exchange(node, [HELLO, PING], [b"", b"", b""], [HELLO], timeout=0.5)
        assert [f[4] for f in frames] == [FrameType.HELLO]  # only the one-part HELLO counts
        assert server.dropped_messages == 2  # type: ignore[attr-defined]
        await still_serving(client, registry)


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(HELLO[:-1], id="part-of-a-frame"),
        pytest.param(HELLO + PING, id="two-frames"),
        pytest.param(b"\x00" * 9, id="shorter-than-a-header"),
        pytest.param(b"\x00\x00\x00\x00\xee\x00\x00\x00\x00\x00", id="unknown-type"),
        pytest.param(b"\xff\xff\xff\xff" + HELLO[4:], id="length-lies"),
    ],
)
async def test_a_message_that_is_not_one_frame_ends_that_peer_only(
    registry: str, garbage: bytes
) -> None:
    svc, _ = service()
    async with serving(registry, svc) as (node, client):
        assert await client.call("conf.add", {"a": 1, "b": 1}) == 2
        call = request(1, "conf.add", {"a": 1, "b": 2})
        frames = await exchange(node, [garbage], [HELLO], [call], timeout=0.5)
        assert error_codes(frames) == [(0, "PROTOCOL_ERROR")]
        # Dropped, like a closed connection: the same DEALER starts over with a HELLO.
        assert [f[4] for f in frames[1:]] == [FrameType.HELLO, FrameType.RESPONSE]
        await wait_until(lambda: node.servers["zmq"].peers == 1)  # type: ignore[attr-defined]
        await still_serving(client, registry)


async def test_a_frame_past_max_message_size_is_refused_too_large(registry: str) -> None:
    svc, _ = service()
    limits = jesus.Limits(max_message_size=1000)  # libzmq's limit is at least 64 KiB + header
    async with serving(registry, svc, limits=limits) as (node, client):
        big = request(1, "conf.echo", "x" * 2000)
        frames = await exchange(node, [HELLO], [big], timeout=0.5)
        assert error_codes(frames) == [(0, "TOO_LARGE")]
        await still_serving(client, registry)


async def test_a_message_past_zmq_maxmsgsize_loses_its_connection_not_the_server(
    registry: str,
) -> None:
    svc, _ = service()
    limits = jesus.Limits(max_message_size=64 * KiB)
    async with serving(registry, svc, limits=limits) as (node, client):
        assert await client.call("conf.add", {"a": 1, "b": 1}) == 2  # the first peer
        huge = request(1, "conf.echo", b"x" * (256 * KiB))  # past MAXMSGSIZE: libzmq drops it
        async with raw_dealer(node) as sock:
            sock.send_multipart([HELLO])
            assert [m[0][4] for m in await receive_all(sock, 0.3)] == [FrameType.HELLO]
            sock.send_multipart([huge])
            assert await receive_all(sock, 0.3) == []  # the call never reached jesus
            # libzmq closed that connection, so the server forgot its peer at once.
            await wait_until(lambda: node.servers["zmq"].peers == 1)  # type: ignore[attr-defined]
        await still_serving(client, registry)


async def test_a_peer_that_vanishes_has_its_calls_cancelled_at_once(registry: str) -> None:
    svc, state = service()
    limits = jesus.Limits(keepalive_interval=60)  # not the watchdog: the disconnect
    async with serving(registry, svc, limits=limits) as (node, client):
        assert await client.call("conf.add", {"a": 1, "b": 1}) == 2  # the first peer
        async with raw_dealer(node) as sock:
            sock.send_multipart([HELLO])
            sock.send_multipart([request(1, "conf.sleep", 30)])
            with anyio.fail_after(2):
                await state.sleep_started.wait()
        gone_at = anyio.current_time()
        await wait_until(lambda: state.sleep_stopped == 1, timeout=3)
        assert state.sleep_stopped_at is not None and state.sleep_stopped_at - gone_at < 2
        await wait_until(lambda: node.servers["zmq"].peers == 1)  # type: ignore[attr-defined]
        await still_serving(client, registry)


async def test_a_peer_that_never_reads_is_dropped_not_buffered(
    registry: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PINGs whose PONGs are never read: once libzmq's pipes (and the kernel's buffers) are
    full, the server keeps at most twice write_buffer_size for that peer, then drops it."""
    svc, _ = service()
    limits = jesus.Limits(write_buffer_size=4 * KiB)
    async with serving(registry, svc, limits=limits) as (node, client):
        server: Any = node.servers["zmq"]
        assert await client.call("conf.add", {"a": 1, "b": 1}) == 2  # the first peer
        async with raw_dealer(node) as sock:
            sock.setsockopt(zmq.RCVHWM, 10)
            sock.setsockopt(zmq.RCVBUF, 4 * KiB)
            sock.send_multipart([HELLO])
            await wait_until(lambda: server.peers == 2)  # the client's and this one
            sent = 0
            dropped = "dropping a peer that does not read its answers"
            # Until the drop: PINGs that follow it come as a new peer without a HELLO (each
            # refused in turn), so the count of peers alone may be seen at 2 again.
            with anyio.fail_after(30):
                while dropped not in caplog.text:
                    for _ in range(100):
                        try:
                            sock.send_multipart([PING], zmq.NOBLOCK)
                            sent += 1
                        except zmq.Again:
                            break
                    await anyio.sleep(0.001)
            assert sent > 1000  # it was read for as long as there was room for its answers
            await still_serving(client, registry)


async def test_serving_cancelled_from_outside_ends_cleanly(registry: str) -> None:
    """A scope around serve() cancelled with peers connected: the server's socket closes
    under its shutdown's last PINGs, which must not fail (it did, about once in 40)."""
    svc, _ = service()
    for _ in range(20):
        async with anyio.create_task_group() as tg, jesus.serve(svc, registry=registry):
            async with jesus.Client(registry) as client:
                assert await client.call("conf.add", {"a": 1, "b": 1}) == 2
            tg.cancel_scope.cancel()
