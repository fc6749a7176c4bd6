"""Golden vectors: the exact bytes PROTOCOL.md promises. A peer in another language can be
checked against the same table."""

from __future__ import annotations

import pytest

from jesus.codecs.json import JsonCodec
from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.identity import NoCompression
from jesus.errors import RemoteProtocolError
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.protocol.frames import FrameDecoder, FrameType, encode_frame

# (name, frame type, flags, stream id, payload hex, whole frame hex)
GOLDEN = [
    ("ping", FrameType.PING, 0x00, 0, "0001020304050607", "000000080200000000000001020304050607"),
    ("ack", FrameType.ACK, 0x00, 7, "", "00000000120000000007"),
    ("end", FrameType.END, 0x00, 9, "", "00000000150000000009"),
    ("cancel", FrameType.CANCEL, 0x00, 3, "", "00000000160000000003"),
    ("credit 16", FrameType.CREDIT, 0x00, 3, "00000010", "0000000417000000000300000010"),
    ("response 3 (msgpack)", FrameType.RESPONSE, 0x00, 1, "03", "0000000111000000000103"),
]

# REQUEST calc.add {"a":1,"b":2}, meta {"c":"x-1"}, mode response, stream 1, msgpack:
# payload = msgpack ["calc.add", {"c": "x-1"}, {"a": 1, "b": 2}]
REQUEST_MSGPACK = (
    "0000001810200000000193a8" + b"calc.add".hex() + "81a163a3" + b"x-1".hex() + "82a16101a16202"
)
# The same call with the json codec, mode ack (flags 0x10), stream 2.
REQUEST_JSON = "00000026101000000002" + b'["calc.add",{"c":"x-1"},{"a":1,"b":2}]'.hex()
ERROR_FRAME = (
    "00000037130000000005" + b'{"code":"UNKNOWN_METHOD","message":"no","corrid":"x-1"}'.hex()
)


@pytest.mark.parametrize(("name", "ftype", "flags", "sid", "payload", "frame"), GOLDEN)
def test_golden_frames_encode_and_decode(
    name: str, ftype: int, flags: int, sid: int, payload: str, frame: str
) -> None:
    assert encode_frame(ftype, flags, sid, bytes.fromhex(payload)).hex() == frame
    decoded = FrameDecoder(1024).feed(bytes.fromhex(frame))
    assert decoded == [(ftype, flags, sid, bytes.fromhex(payload))]


def _open_client(codec: object) -> ProtocolConnection:
    conn = ProtocolConnection(Role.CLIENT, Limits(), codec=codec, compression=NoCompression())
    hello = (
        f'{{"protocol":"jesus","version":1,"codec":"{codec.name}","compression":"none"}}'
    ).encode()  # type: ignore[attr-defined]
    conn.receive_data(encode_frame(FrameType.HELLO, 0, 0, hello))
    return conn


def test_golden_request_msgpack() -> None:
    conn = _open_client(MsgpackCodec())
    sid, frame = conn.send_request(
        "calc.add", {"c": "x-1"}, {"a": 1, "b": 2}, ResponseMode.RESPONSE
    )
    assert sid == 1
    assert frame.hex() == REQUEST_MSGPACK


def test_golden_request_json() -> None:
    conn = _open_client(JsonCodec())
    conn.send_request("calc.add", {"c": "x-0"}, None, ResponseMode.NO_RESPONSE)
    sid, frame = conn.send_request("calc.add", {"c": "x-1"}, {"a": 1, "b": 2}, ResponseMode.ACK)
    assert sid == 2
    assert frame.hex() == REQUEST_JSON


def test_golden_error_frame() -> None:
    from jesus.errors import UnknownMethod

    conn = ProtocolConnection(Role.SERVER, Limits())
    frame = conn.send_error(5, UnknownMethod("no", corrid="x-1"))
    assert frame.hex() == ERROR_FRAME


def test_decoder_handles_frames_split_anywhere() -> None:
    stream = bytes.fromhex(REQUEST_MSGPACK) + bytes.fromhex(GOLDEN[0][5]) * 3
    for cut in range(1, len(stream)):
        decoder = FrameDecoder(1024)
        frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert len(frames) == 4
        assert decoder.buffered == 0


def test_decoder_refuses_oversized_length_before_buffering() -> None:
    decoder = FrameDecoder(1024)
    with pytest.raises(RemoteProtocolError, match="exceeds max_message_size"):
        decoder.feed(bytes.fromhex("ffffffff100000000001"))


def test_decoder_refuses_unknown_frame_type() -> None:
    with pytest.raises(RemoteProtocolError, match="unknown frame type 0x7f"):
        FrameDecoder(1024).feed(bytes.fromhex("000000007f0000000001"))
