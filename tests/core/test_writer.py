"""jesus.transport.writer: the first BURST frames of a loop turn go to the socket at once, so
that the peer starts on them; the rest of the turn's leave together in one send; every byte
arrives, in order, on every backend."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import ByteStream

from jesus.transport import writer as writer_module
from jesus.transport.writer import BURST, FrameWriter
from tests.helpers import tcp_pair

pytestmark = pytest.mark.anyio


async def _received(stream: ByteStream, size: int) -> bytes:
    got = b""
    with anyio.fail_after(5):
        while len(got) < size:
            got += await stream.receive()
    return got


async def test_a_turns_frames_past_the_burst_leave_in_one_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sends: list[bytes] = []
    real = writer_module.direct_send

    def counted(stream: ByteStream) -> Any:
        direct = real(stream)
        assert direct is not None  # plain tcp: every backend writes without a task switch

        def send(data: bytes) -> int:
            sends.append(bytes(data))
            return direct(data)

        return send

    monkeypatch.setattr(writer_module, "direct_send", counted)
    client, server, listener = await tcp_pair()
    try:
        async with anyio.create_task_group() as tg:
            out = FrameWriter(client, high_water=1 << 20)
            tg.start_soon(out.run, lambda: None)
            await anyio.lowlevel.checkpoint()
            frames = [f"frame {i:02d};".encode() for i in range(BURST + 12)]
            for frame in frames:  # one turn: nothing awaits between the writes
                out.write(frame)
            assert sends == frames[:BURST]  # each went at once
            expected = b"".join(frames)
            assert await _received(server, len(expected)) == expected
            assert sends[BURST:] == [b"".join(frames[BURST:])]  # the rest in one send
            # A later turn starts a burst of its own.
            out.write(b"next turn;")
            assert sends[-1] == b"next turn;"
            assert await _received(server, 10) == b"next turn;"
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
        await server.aclose()
        await listener.aclose()


async def test_frames_behind_a_full_socket_wait_their_turn_and_all_arrive() -> None:
    """Past what the socket takes, frames queue for the writer task: nothing is lost or
    reordered, and the writer reports itself full until it catches up."""
    client, server, listener = await tcp_pair()
    try:
        async with anyio.create_task_group() as tg:
            out = FrameWriter(client, high_water=64 * 1024)
            tg.start_soon(out.run, lambda: None)
            await anyio.lowlevel.checkpoint()
            frames = [bytes([i % 251]) * 50_000 for i in range(200)]  # 10 MB, one turn
            for frame in frames:
                out.write(frame)
            assert out.full  # the socket could not take it all at once
            expected = b"".join(frames)
            got = await _received(server, len(expected))
            assert got == expected
            with anyio.fail_after(5):
                await out.flush()
            assert not out.full
            tg.cancel_scope.cancel()
    finally:
        await client.aclose()
        await server.aclose()
        await listener.aclose()
