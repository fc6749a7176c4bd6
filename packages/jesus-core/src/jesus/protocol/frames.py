"""Frame layout: a 10-byte header, then the payload.

offset  size  field
0       4     payload length, unsigned big-endian (not counting the header)
4       1     frame type (FrameType)
5       1     flags (Flag)
6       4     stream id, unsigned big-endian (0 = the connection itself)
"""

from __future__ import annotations

import enum
import struct

from jesus.errors import FrameTooLarge as FrameTooLarge  # raised here, defined with the rest
from jesus.errors import RemoteProtocolError

PROTOCOL_VERSION = 1
HEADER = struct.Struct("!IBBI")
HEADER_SIZE = HEADER.size
MAX_STREAM_ID = 0xFFFFFFFF
# Control frames (HELLO, ERROR, GOAWAY) may always be this large, whatever max_message_size is.
MIN_FRAME_LIMIT = 65536


class FrameType(enum.IntEnum):
    HELLO = 0x01
    PING = 0x02
    PONG = 0x03
    GOAWAY = 0x04
    REQUEST = 0x10
    RESPONSE = 0x11
    ACK = 0x12
    ERROR = 0x13
    ITEM = 0x14
    END = 0x15
    CANCEL = 0x16
    CREDIT = 0x17
    # Several stream items in one frame, sent to a client that announced "items".
    ITEMS = 0x18


KNOWN_TYPES = frozenset(int(t) for t in FrameType)


class Flag(enum.IntFlag):
    NONE = 0
    # The payload is compressed with the connection's compression.
    COMPRESSED = 0x01
    # REQUEST only: bits 4-5 hold the response mode (0 noResponse, 1 ack, 2 response, 3 stream).
    MODE_MASK = 0x30


MODE_SHIFT = 4

_pack = HEADER.pack
_unpack_from = HEADER.unpack_from


def encode_frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    return _pack(len(payload), ftype, flags, stream_id) + payload


class FrameDecoder:
    """Accumulates bytes and yields whole frames as (type, flags, stream_id, payload).

    Raises RemoteProtocolError on a frame longer than `max_payload` (checked from the header,
    before any of the payload is buffered) or of an unknown type.
    """

    __slots__ = ("_buffer", "max_payload")

    def __init__(self, max_payload: int) -> None:
        self._buffer = bytearray()
        self.max_payload = max(max_payload, MIN_FRAME_LIMIT)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[tuple[int, int, int, bytes]]:
        buf = self._buffer
        buf += data
        frames = []
        offset = 0
        end = len(buf)
        max_payload = self.max_payload
        while end - offset >= HEADER_SIZE:
            length, ftype, flags, stream_id = _unpack_from(buf, offset)
            if length > max_payload:
                raise FrameTooLarge(
                    f"frame of {length} bytes exceeds max_message_size ({max_payload})"
                )
            if ftype not in KNOWN_TYPES:
                raise RemoteProtocolError(f"unknown frame type 0x{ftype:02x}")
            start = offset + HEADER_SIZE
            stop = start + length
            if stop > end:
                break
            frames.append((ftype, flags, stream_id, bytes(buf[start:stop])))
            offset = stop
        if offset:
            del buf[:offset]
        return frames
