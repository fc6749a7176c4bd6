"""The answers of one call, as frames on its stream id, each in a ZMQ message of its own.

Toolkit gap: the credit rules of a stream's items (PROTOCOL.md, "Streams and flow control")
live in `jesus_tcp/reply.py` (`FrameReply`), not in `jesus.transport`, so a third-party
transport cannot reuse them. This is the minimum of them: one ITEM frame per item (valid for
every client, so no ITEMS batching), spending one item and the payload's bytes of credit, and
waiting at zero for the client's CREDIT."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from jesus.errors import CallError
from jesus.protocol.frames import HEADER_SIZE

if TYPE_CHECKING:
    from jesus_zmq.peer import Peer


class ZmqReply:
    __slots__ = ("_byte_credit", "_credit", "_event", "_owns_sid", "open", "peer", "sid")
    always_answers: ClassVar[bool] = False

    def __init__(self, peer: Peer, sid: int, opened: bool) -> None:
        self.peer = peer
        self.sid = sid
        self.open = True
        self._owns_sid = opened  # a noResponse call never opens its stream id
        self._credit = peer.proto.peer_stream_window
        self._byte_credit = peer.proto.peer_stream_window_bytes
        self._event: anyio.Event | None = None

    def ack(self) -> None:
        self.open = self._owns_sid = False
        self.peer.write(self.peer.proto.send_ack(self.sid))

    def result(self, value: Any) -> Awaitable[None] | None:
        frame = self.peer.proto.send_response(self.sid, value)
        self.open = self._owns_sid = False
        self.peer.write(frame)
        return self.peer.pressure()

    def error(self, error: CallError) -> None:
        self.open = self._owns_sid = False
        self.peer.write(self.peer.proto.send_error(self.sid, error))

    def item(self, value: Any) -> Awaitable[None] | None:
        if self._credit <= 0 or self._byte_credit <= 0:
            return self._item_later(value)
        frame = self.peer.proto.send_item(self.sid, value)
        self._credit -= 1
        self._byte_credit -= len(frame) - HEADER_SIZE
        self.peer.write(frame)
        if self.peer.gone:
            self.open = False
        return self.peer.pressure()

    async def _item_later(self, value: Any) -> None:
        """No credit left: wait for the client's CREDIT (or for the call to end)."""
        while (self._credit <= 0 or self._byte_credit <= 0) and self.open:
            self._event = anyio.Event()
            await self._event.wait()
        if self.open:
            pending = self.item(value)
            if pending is not None:
                await pending

    def grant(self, credit: int, nbytes: int = 0) -> None:
        self._credit += credit
        self._byte_credit += nbytes
        if self._event is not None:
            self._event.set()

    def end(self) -> None:
        self.open = self._owns_sid = False
        self.peer.write(self.peer.proto.send_end(self.sid))

    def close(self) -> None:
        self.open = False
        if self._owns_sid:  # ended without a final frame (cancelled): the id is free again
            self._owns_sid = False
            self.peer.proto.open_streams.pop(self.sid, None)
        if self._event is not None:
            self._event.set()
