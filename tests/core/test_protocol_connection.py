"""The sans-IO state machine, two ends joined in memory (no sockets)."""

from __future__ import annotations

import pytest

from jesus.codecs.json import JsonCodec
from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.identity import NoCompression
from jesus.compression.zstd import ZstdCompression
from jesus.errors import BadFrame, LocalProtocolError, RemoteProtocolError, TooLarge, UnknownMethod
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.protocol import events as ev
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.protocol.frames import Flag, FrameType, encode_frame

CODECS = {"msgpack": MsgpackCodec(), "json": JsonCodec()}
COMPRESSIONS = {"none": NoCompression(), "zstd": ZstdCompression()}


def pair(
    codec: str = "msgpack", compression: str = "none", limits: Limits | None = None
) -> tuple[ProtocolConnection, ProtocolConnection]:
    limits = limits or Limits()
    client = ProtocolConnection(
        Role.CLIENT, limits, codec=CODECS[codec], compression=COMPRESSIONS[compression]
    )
    server = ProtocolConnection(Role.SERVER, limits, codecs=CODECS, compressions=COMPRESSIONS)
    (hello,) = server.receive_data(client.send_hello())
    assert isinstance(hello, ev.HelloReceived) and hello.info["codec"] == codec
    (back,) = client.receive_data(server.send_hello())
    assert isinstance(back, ev.HelloReceived)
    return client, server


@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_call_and_response(codec: str, compression: str) -> None:
    client, server = pair(codec, compression)
    big = {"text": "x" * 5000}
    sid, frame = client.send_request("s.m", {"c": "1"}, big, ResponseMode.RESPONSE)
    if compression == "zstd":
        assert frame[5] & Flag.COMPRESSED and len(frame) < 1000
    (req,) = server.receive_data(frame)
    assert isinstance(req, ev.RequestReceived)
    assert (req.stream_id, req.method, req.meta, req.data, req.mode) == (
        sid,
        "s.m",
        {"c": "1"},
        big,
        ResponseMode.RESPONSE,
    )
    (resp,) = client.receive_data(server.send_response(sid, [1, 2]))
    assert resp == ev.ResponseReceived(sid, [1, 2])
    assert client.open_streams == {} and server.open_streams == {}


def test_stream_items_credit_and_end() -> None:
    client, server = pair()
    sid, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.STREAM)
    server.receive_data(frame)
    events = client.receive_data(
        server.send_item(sid, 1) + server.send_item(sid, 2) + server.send_end(sid)
    )
    assert events == [ev.ItemReceived(sid, 1), ev.ItemReceived(sid, 2), ev.EndReceived(sid)]
    (credit,) = server.receive_data(client.send_credit(sid, 5)) or [None]
    assert credit is None  # the stream already ended: a late credit is ignored


def test_cancel_reaches_an_open_call_and_late_answers_are_ignored() -> None:
    client, server = pair()
    sid, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.RESPONSE)
    server.receive_data(frame)
    assert server.receive_data(client.send_cancel(sid)) == [ev.CancelReceived(sid)]
    assert client.receive_data(server.send_response(sid, 1)) == []


def test_errors_come_back_typed() -> None:
    client, server = pair()
    sid, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.RESPONSE)
    server.receive_data(frame)
    (event,) = client.receive_data(server.send_error(sid, UnknownMethod("nope", corrid="1")))
    assert isinstance(event, ev.ErrorReceived) and isinstance(event.error, UnknownMethod)
    assert event.error.remote and event.error.corrid == "1"


def test_no_response_requests_never_open_a_stream() -> None:
    client, server = pair()
    _, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.NO_RESPONSE)
    (req,) = server.receive_data(frame)
    assert req.mode is ResponseMode.NO_RESPONSE  # type: ignore[union-attr]
    assert client.open_streams == {} and server.open_streams == {}


def test_bad_envelopes_reject_the_call_not_the_connection() -> None:
    _client, server = pair()
    garbage = encode_frame(FrameType.REQUEST, 2 << 4, 5, b"\xc1\xc1")
    not_a_list = encode_frame(FrameType.REQUEST, 2 << 4, 6, MsgpackCodec().encode({"a": 1}))
    bomb = encode_frame(
        FrameType.REQUEST,
        (2 << 4) | Flag.COMPRESSED,
        7,
        ZstdCompression().compress(b"\0" * (70 * 1024 * 1024)),
    )
    events = server.receive_data(garbage + not_a_list)
    assert [type(e) for e in events] == [ev.RequestRejected, ev.RequestRejected]
    assert all(isinstance(e.error, BadFrame) for e in events)  # type: ignore[union-attr]
    bomb_server = pair("msgpack", "zstd")[1]
    (event,) = bomb_server.receive_data(bomb)
    assert isinstance(event, ev.RequestRejected) and isinstance(event.error, TooLarge)


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(FrameType.REQUEST, 0, 0, b"\x93\xa1m\x80\xc0"),  # stream 0
        encode_frame(FrameType.RESPONSE, 0, 1, b"\x01"),  # a server frame from a client
        encode_frame(FrameType.HELLO, 0, 0, b"{}"),  # a second HELLO
        encode_frame(FrameType.CREDIT, 0, 1, b"\x01"),  # short CREDIT payload
    ],
)
def test_protocol_violations_end_the_connection(frame: bytes) -> None:
    _, server = pair()
    with pytest.raises(RemoteProtocolError):
        server.receive_data(frame)


def test_reusing_an_open_stream_id_is_a_violation() -> None:
    client, server = pair()
    _sid, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.RESPONSE)
    server.receive_data(frame)
    with pytest.raises(RemoteProtocolError, match="reuses open stream"):
        server.receive_data(frame)


@pytest.mark.parametrize(
    "hello",
    [
        b"not json",
        b'{"protocol":"http"}',
        b'{"protocol":"jesus","version":0}',
        b'{"protocol":"jesus","version":1,"codec":"yaml"}',
        b'{"protocol":"jesus","version":1,"codec":"json","compression":"lz4"}',
    ],
)
def test_bad_handshakes_are_refused(hello: bytes) -> None:
    server = ProtocolConnection(Role.SERVER, Limits(), codecs=CODECS, compressions=COMPRESSIONS)
    with pytest.raises(RemoteProtocolError):
        server.receive_data(encode_frame(FrameType.HELLO, 0, 0, hello))


def test_first_frame_must_be_hello() -> None:
    server = ProtocolConnection(Role.SERVER, Limits(), codecs=CODECS, compressions=COMPRESSIONS)
    with pytest.raises(RemoteProtocolError, match="expected HELLO"):
        server.receive_data(encode_frame(FrameType.PING, 0, 0, b"12345678"))


def test_requests_before_the_handshake_are_a_local_error() -> None:
    client = ProtocolConnection(
        Role.CLIENT, Limits(), codec=CODECS["json"], compression=COMPRESSIONS["none"]
    )
    with pytest.raises(LocalProtocolError):
        client.send_request("s.m", {"c": "1"}, None, ResponseMode.RESPONSE)


def test_oversized_messages_fail_at_the_sender() -> None:
    client, _ = pair(limits=Limits(max_message_size=100))
    with pytest.raises(TooLarge):
        client.send_request("s.m", {"c": "1"}, "x" * 200, ResponseMode.RESPONSE)
    assert client.open_streams == {}


def test_ping_pong_and_goaway() -> None:
    client, server = pair()
    assert server.receive_data(client.send_ping(b"abcdefgh")) == [ev.PingReceived(b"abcdefgh")]
    assert client.receive_data(server.send_pong(b"abcdefgh")) == [ev.PongReceived(b"abcdefgh")]
    (goaway,) = client.receive_data(server.send_goaway("bye"))
    assert goaway == ev.GoAwayReceived(0, "bye")
