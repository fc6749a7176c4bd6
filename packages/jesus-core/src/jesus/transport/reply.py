"""The answers of one call as frames on its stream id, for every transport that carries
PROTOCOL.md frames (a byte stream through `FrameWriter`, or one frame per message).

Stream items wait for credit: items, and for a client with a byte window, payload bytes (a
frame may be sent while any byte credit is left, so a stream holds at most its byte window
plus one frame). For a client that announced "items", they go many to a frame: each item is
encoded as it comes (so its size is known and bounded at once), and the items gathered until
the writer's next send, or until `BATCH_BYTES`, leave as one ITEMS frame."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar

import anyio

from jesus.errors import CallError
from jesus.protocol.connection import ProtocolConnection
from jesus.protocol.frames import HEADER_SIZE
from jesus.transport.traffic import UNCOUNTED
from jesus.transport.writer import FrameSink

# An ITEMS payload at most (less when max_message_size is smaller): large enough that a
# send carries many small items, small enough to cost little memory per stream.
BATCH_BYTES = 32 * 1024
# What joining the parts adds at most, beside one byte per part (an array header, brackets).
_JOIN_OVERHEAD = 8


class FrameReply:
    __slots__ = (
        "_batch",
        "_batch_limit",
        "_batched",
        "_byte_credit",
        "_credit",
        "_deferred",
        "_event",
        "_first",
        "_owns_sid",
        "_streaming",
        "meter",
        "open",
        "proto",
        "sid",
        "writer",
    )
    always_answers: ClassVar[bool] = False

    def __init__(
        self, proto: ProtocolConnection, writer: FrameSink, sid: int, opened: bool
    ) -> None:
        self.proto = proto
        self.writer = writer
        self.sid = sid
        self.open = True
        self.meter = UNCOUNTED  # the runner's, once the call is admitted
        # Whether the stream id is this call's until its final frame (a noResponse call never
        # opens one; once answered, the client may reuse the id for another call).
        self._owns_sid = opened
        self._event: anyio.Event | None = None
        # A stream's state, set by its first item or CREDIT (_open_stream): most calls are
        # not streams, and this is made for every request.
        self._streaming = False
        self._batch: list[bytes] | None = None

    def _open_stream(self) -> None:
        proto = self.proto
        self._streaming = True
        self._credit = proto.peer_stream_window  # items it may send before a CREDIT
        self._byte_credit = proto.peer_stream_window_bytes  # and payload bytes
        # Encoded items not yet framed (None: one frame per item), and their size.
        self._batch = [] if proto.batches_items else None
        self._batched = 0
        self._batch_limit = min(BATCH_BYTES, proto.max_outgoing)
        self._deferred = False  # the writer will call _on_send before its next send
        self._first = True  # the first item goes at once: the time to it is what a caller sees

    def ack(self) -> None:
        self.open = self._owns_sid = False
        self.writer.write(self.proto.send_ack(self.sid))

    def result(self, value: Any) -> Awaitable[None] | None:
        writer = self.writer
        frame = self.proto.send_response(self.sid, value)
        self.meter.sent += len(frame) - HEADER_SIZE
        writer.write(frame)
        self.open = self._owns_sid = False
        return writer.drain() if writer.full else None

    def error(self, error: CallError) -> None:
        self._flush()  # the items before the error still count
        self.open = self._owns_sid = False
        frame = self.proto.send_error(self.sid, error)
        self.meter.sent += len(frame) - HEADER_SIZE
        self.writer.write(frame)

    def item(self, value: Any) -> Awaitable[None] | None:
        if not self._streaming:
            self._open_stream()
        if self._credit <= 0 or self._byte_credit <= self._batched:
            return self._item_later(value)
        if self._batch is None:
            self._credit -= 1
            self._send(self.proto.send_item(self.sid, value))
        else:
            self._gather(self.proto.encode_item(value))
        writer = self.writer
        if writer.full:
            return writer.drain()
        if writer.closed:
            self.open = False
        return None

    def _gather(self, part: bytes) -> None:
        self._credit -= 1
        if self._first:
            self._first = False
            self._send(self.proto.send_items(self.sid, [part]), at_once=True)
            return
        batch = self._batch
        assert batch is not None
        size = len(part)
        if self._batched + size + len(batch) + _JOIN_OVERHEAD > self._batch_limit:
            self._flush()
            if size + _JOIN_OVERHEAD > self._batch_limit:  # too large to share a frame
                self._send(self.proto.send_items(self.sid, [part]))
                return
        batch.append(part)
        self._batched += size
        if not self._deferred:
            self._deferred = True
            self.writer.defer(self._on_send)
        if self._credit == 0 or self._byte_credit <= self._batched:
            self._flush()  # nothing more may follow until a CREDIT

    def _on_send(self) -> None:
        self._deferred = False
        self._flush()

    def _flush(self) -> None:
        batch = self._batch
        if batch:
            if self.open:
                self._send(self.proto.send_items(self.sid, batch))
            batch.clear()
            self._batched = 0

    def _send(self, frame: bytes, at_once: bool = False) -> None:
        size = len(frame) - HEADER_SIZE
        self._byte_credit -= size
        self.meter.sent += size
        self.writer.write(frame, at_once)

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
        if not self._streaming:
            self._open_stream()
        self._credit += credit
        self._byte_credit += nbytes
        if self._event is not None:
            self._event.set()

    def end(self) -> None:
        self._flush()
        self.open = self._owns_sid = False
        self.writer.write(self.proto.send_end(self.sid))

    def close(self) -> None:
        self.open = False
        if self._batch:
            self._batch.clear()  # cancelled: what was not framed yet is not sent
        if self._owns_sid:  # ended without a final frame (cancelled): the id is free again
            self._owns_sid = False
            self.proto.open_streams.pop(self.sid, None)
        if self._event is not None:
            self._event.set()
