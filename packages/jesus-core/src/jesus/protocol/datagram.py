"""Datagram layout (UDP and other message transports), sans-IO: one message per datagram.

offset  size  field
0       2     magic "JS" (0x4a 0x53)
2       1     version (1)
3       1     type: REQUEST 0x10, RESPONSE 0x11, ACK 0x12, ERROR 0x13
4       1     flags: bit 0 COMPRESSED; bits 4-5 the response mode (REQUEST only)
5       1     reserved, 0
6       8     message id, unsigned big-endian; answers repeat the request's
14      1     n: length of the codec name
15      n     codec name (ASCII), e.g. "msgpack"
15+n    1     m: length of the compression name
16+n    m     compression name (ASCII), e.g. "zstd"
16+n+m  ...   payload, as in stream frames: REQUEST [method, meta, data] and RESPONSE
              the value, in the codec (compressed when COMPRESSED); ERROR UTF-8 JSON;
              ACK empty
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from jesus.errors import BadFrame, CallError, TooLarge, error_from_wire
from jesus.limits import check_message_size
from jesus.messages import ResponseMode
from jesus.payload import decode_payload
from jesus.protocol.frames import MODE_SHIFT, Flag, FrameType

MAGIC = b"JS"
DATAGRAM_VERSION = 1
_HEAD = struct.Struct("!2sBBBBQ")
HEAD_SIZE = _HEAD.size
_COMPRESSED = int(Flag.COMPRESSED)
_MODE_MASK = int(Flag.MODE_MASK)
TYPES = frozenset((FrameType.REQUEST, FrameType.RESPONSE, FrameType.ACK, FrameType.ERROR))
_MODES = [ResponseMode.from_wire(i) for i in range(4)]


@dataclass(slots=True)  # not frozen: a frozen one sets each field through object.__setattr__
class Datagram:
    type: int
    mode: ResponseMode
    message_id: int
    codec: str
    compression: str
    compressed: bool
    payload: bytes


def encode_datagram(
    ftype: int,
    message_id: int,
    codec: Any,
    compression: Any,
    payload: bytes,
    *,
    mode: ResponseMode = ResponseMode.NO_RESPONSE,
    compressed: bool = False,
) -> bytes:
    flags = (_COMPRESSED if compressed else 0) | (
        mode.wire << MODE_SHIFT if ftype == FrameType.REQUEST else 0
    )
    codec_name = codec.name.encode("ascii")
    comp_name = compression.name.encode("ascii")
    return b"".join(
        (
            _HEAD.pack(MAGIC, DATAGRAM_VERSION, ftype, flags, 0, message_id),
            bytes((len(codec_name),)),
            codec_name,
            bytes((len(comp_name),)),
            comp_name,
            payload,
        )
    )


def decode_datagram(data: bytes) -> Datagram:
    """Parse the header; raises BadFrame on anything that is not a version-1 datagram."""
    if len(data) < HEAD_SIZE + 2:
        raise BadFrame(f"datagram of {len(data)} bytes is shorter than a header")
    magic, version, ftype, flags, _, message_id = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise BadFrame("not a jesus datagram (bad magic)")
    if version != DATAGRAM_VERSION:
        raise BadFrame(f"datagram version {version} is not supported")
    if ftype not in TYPES:
        raise BadFrame(f"unknown datagram type 0x{ftype:02x}")
    try:
        first = data[HEAD_SIZE]
        end = HEAD_SIZE + 2 + first + data[HEAD_SIZE + 1 + first]
    except IndexError:
        raise BadFrame("truncated datagram header") from None
    names = _NAMES.get(data[HEAD_SIZE:end])
    if names is None:
        names = _names(data)
    codec, compression, offset = names
    return Datagram(
        type=ftype,
        mode=_MODES[(flags & _MODE_MASK) >> MODE_SHIFT],
        message_id=message_id,
        codec=codec,
        compression=compression,
        compressed=bool(flags & _COMPRESSED),
        payload=data[offset:],
    )


# The codec and compression names as they start a datagram's payload, parsed once: the same
# few pairs come every time (bounded: anyone may send datagrams).
_NAMES_KEPT = 32
_NAMES: dict[bytes, tuple[str, str, int]] = {}


def _names(data: bytes) -> tuple[str, str, int]:
    """(codec, compression, offset of the payload); raises BadFrame."""
    offset = HEAD_SIZE
    names = []
    for _ in range(2):
        if offset >= len(data):
            raise BadFrame("truncated datagram header")
        size = data[offset]
        name = data[offset + 1 : offset + 1 + size]
        if len(name) != size:
            raise BadFrame("truncated datagram header")
        try:
            names.append(name.decode("ascii"))
        except UnicodeDecodeError:
            raise BadFrame("codec and compression names must be ASCII") from None
        offset += 1 + size
    found = (names[0], names[1], offset)
    if len(_NAMES) < _NAMES_KEPT:
        _NAMES[data[HEAD_SIZE:offset]] = found
    return found


class DatagramCodec:
    """Payload encoding for one (codec, compression) pair, bounded by the limits."""

    def __init__(self, codec: Any, compression: Any, limits: Any) -> None:
        self.codec = codec
        self.compression = compression
        self.limits = limits
        self._compress = compression.name != "none"

    def pack(self, ftype: int, message_id: int, value: Any, mode: ResponseMode) -> bytes:
        """A whole datagram carrying `value`; raises TooLarge past max_datagram_size (after
        compression, so a large but compressible message can still fit) or ValueError."""
        payload = self.codec.encode(value)
        compressed = False
        if self._compress and len(payload) >= self.limits.compress_threshold:
            payload = self.compression.compress(payload)
            compressed = True
        check_message_size(len(payload), self.limits.max_message_size)
        datagram = encode_datagram(
            ftype,
            message_id,
            self.codec,
            self.compression,
            payload,
            mode=mode,
            compressed=compressed,
        )
        if len(datagram) > self.limits.max_datagram_size:
            raise TooLarge(
                f"message of {len(datagram)} bytes does not fit in a datagram "
                f"(max_datagram_size={self.limits.max_datagram_size}); use a stream channel "
                f"such as tcp for large messages"
            )
        return datagram

    def unpack(self, datagram: Datagram, inline: bool = True) -> tuple[Any, int]:
        """The payload's value and decoded size; raises TooLarge past max_message_size or
        another decode limit, BadFrame when it does not decode, `jesus.payload.Heavy`."""
        check_message_size(len(datagram.payload), self.limits.max_message_size)
        return decode_payload(
            self.codec, self.compression, datagram.payload, datagram.compressed, self.limits, inline
        )


def error_datagram(message_id: int, codec: Any, compression: Any, error: CallError) -> bytes:
    payload = json.dumps(error.to_wire(), separators=(",", ":")).encode()
    return encode_datagram(FrameType.ERROR, message_id, codec, compression, payload)


def read_error(payload: bytes) -> CallError:
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        raw = None
    return error_from_wire(raw)
