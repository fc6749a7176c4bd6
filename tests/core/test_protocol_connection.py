"""The sans-IO state machine, two ends joined in memory (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jesus.codecs.json import JsonCodec
from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.identity import NoCompression
from jesus.compression.zstd import ZstdCompression
from jesus.errors import BadFrame, LocalProtocolError, RemoteProtocolError, TooLarge, UnknownMethod
from jesus.limits import Limits
from jesus.messages import Meta, ResponseMode
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import (
    DEFAULT_STREAM_WINDOW,
    UNLIMITED,
    ProtocolConnection,
    Role,
)
from jesus.protocol.frames import HEADER_SIZE, MAX_STREAM_ID, Flag, FrameType, encode_frame

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
    answer = server.send_response(sid, [1, 2])
    (resp,) = client.receive_data(answer)
    assert resp == ev.ResponseReceived(sid, [1, 2], len(answer) - HEADER_SIZE)  # its payload
    assert client.open_streams == {} and server.open_streams == {}


def test_stream_items_credit_and_end() -> None:
    client, server = pair()
    sid, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.STREAM)
    server.receive_data(frame)
    events = client.receive_data(
        server.send_item(sid, 1) + server.send_item(sid, 2) + server.send_end(sid)
    )
    # each with its payload size, which the byte window counts
    assert events == [ev.ItemReceived(sid, 1, 1), ev.ItemReceived(sid, 2, 1), ev.EndReceived(sid)]
    # the stream already ended: a late credit is ignored
    assert server.receive_data(client.send_credit(sid, 5)) == []


@pytest.mark.parametrize("codec", ["msgpack", "json"])
@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_many_items_go_in_one_frame_to_a_client_that_announced_them(
    codec: str, compression: str
) -> None:
    client, server = pair(codec, compression)
    assert server.batches_items and client.credits_bytes
    sid, frame = client.send_request("s.m", {}, None, ResponseMode.STREAM)
    server.receive_data(frame)
    values: list[Any] = [1, "two", {"three": [3] * 4000}, None]
    frame = server.send_items(sid, [server.encode_item(v) for v in values])
    assert frame[4] == FrameType.ITEMS
    assert bool(frame[5] & Flag.COMPRESSED) == (compression == "zstd")
    (event,) = client.receive_data(frame)
    assert event == ev.ItemsReceived(sid, values, len(frame) - 10)
    # one part is a plain ITEM, which any client reads
    (single,) = client.receive_data(server.send_items(sid, [server.encode_item(7)]))
    assert type(single) is ev.ItemReceived and single.value == 7


def test_msgpack_join_matches_encoding_the_array() -> None:
    codec = MsgpackCodec()
    for n in (2, 15, 16, 65535, 65536):
        items = list(range(n))
        assert codec.join([codec.encode(i) for i in items]) == codec.encode(items)
    json_codec = JsonCodec()
    assert json_codec.decode(json_codec.join([b"1", b'"a"'])) == [1, "a"]


def test_an_old_client_gets_single_items_and_gives_item_credit() -> None:
    hello = {**MINIMAL_CLIENT_HELLO, "capabilities": ["stream", "credit"]}
    server = server_after(hello)
    assert not server.batches_items
    assert server.peer_stream_window_bytes == UNLIMITED
    client = client_after({"protocol": "jesus", "version": 1, "capabilities": ["stream", "credit"]})
    assert not client.credits_bytes
    assert len(client.send_credit(1, 5, 999)) == 10 + 4  # the old 4-byte CREDIT


def test_credit_carries_bytes_to_a_server_that_reads_them() -> None:
    client, server = pair(limits=Limits(stream_window=8, stream_window_bytes=4096))
    assert (server.peer_stream_window, server.peer_stream_window_bytes) == (8, 4096)
    sid, frame = client.send_request("s.m", {}, None, ResponseMode.STREAM)
    server.receive_data(frame)
    (credit,) = server.receive_data(client.send_credit(sid, 3, 1500))
    assert credit == ev.CreditReceived(sid, 3, 1500)
    # and an old client's 4-byte CREDIT still reads, as items alone
    old = encode_frame(FrameType.CREDIT, 0, sid, (2).to_bytes(4, "big"))
    assert server.receive_data(old) == [ev.CreditReceived(sid, 2, 0)]


@pytest.mark.parametrize(
    "payload", [b"\x90", b"\x01", b"\xc1"], ids=["empty array", "not an array", "garbage"]
)
def test_a_bad_items_frame_fails_that_stream_alone(payload: bytes) -> None:
    client, server = pair()
    sid, frame = client.send_request("s.m", {}, None, ResponseMode.STREAM)
    other, frame2 = client.send_request("s.m", {}, None, ResponseMode.STREAM)
    server.receive_data(frame + frame2)
    (event,) = client.receive_data(encode_frame(FrameType.ITEMS, 0, sid, payload))
    assert type(event) is ev.ErrorReceived and event.stream_id == sid
    assert isinstance(event.error, BadFrame)
    assert sid not in client.open_streams and other in client.open_streams
    # a late ITEMS on the ended stream is ignored, like any late answer
    assert client.receive_data(encode_frame(FrameType.ITEMS, 0, sid, b"\x91\x01")) == []


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


def off_the_loop(server: ProtocolConnection, event: ev.Event) -> ev.Event:
    """What the transport does with a heavy request: decode it again, without the bound."""
    if not isinstance(event, ev.HeavyRequestReceived):
        return event
    return server.decode_request(
        event.stream_id, event.mode, event.flags, event.payload, inline=False
    )


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
    (heavy,) = bomb_server.receive_data(bomb)
    # Past 256 KiB inflated, decoding moves off the event loop; there the limit refuses it.
    assert isinstance(heavy, ev.HeavyRequestReceived)
    event = off_the_loop(bomb_server, heavy)
    assert isinstance(event, ev.RequestRejected) and isinstance(event.error, TooLarge)


@pytest.mark.parametrize(
    "frame",
    [
        encode_frame(FrameType.REQUEST, 0, 0, b"\x93\xa1m\x80\xc0"),  # stream 0
        encode_frame(FrameType.RESPONSE, 0, 1, b"\x01"),  # a server frame from a client
        encode_frame(FrameType.HELLO, 0, 0, b"{}"),  # a second HELLO
        encode_frame(FrameType.CREDIT, 0, 1, b"\x01"),  # short CREDIT payload
        encode_frame(FrameType.CREDIT, 0, 1, b"\x00" * 6),  # neither 4 nor 8 bytes
        encode_frame(FrameType.ITEMS, 0, 1, b"\x91\x01"),  # a server frame from a client
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


# ----------------------------------------------------------------- PROTOCOL.md, "Handshake"

MINIMAL_CLIENT_HELLO = {"protocol": "jesus", "version": 1, "codec": "msgpack"}


def server_after(hello: dict[str, Any]) -> ProtocolConnection:
    server = ProtocolConnection(Role.SERVER, Limits(), codecs=CODECS, compressions=COMPRESSIONS)
    server.receive_data(encode_frame(FrameType.HELLO, 0, 0, json.dumps(hello).encode()))
    return server


def client_after(hello: dict[str, Any]) -> ProtocolConnection:
    client = ProtocolConnection(
        Role.CLIENT, Limits(), codec=CODECS["msgpack"], compression=COMPRESSIONS["none"]
    )
    client.receive_data(encode_frame(FrameType.HELLO, 0, 0, json.dumps(hello).encode()))
    return client


def test_a_minimal_client_hello_takes_the_defaults() -> None:
    server = server_after(MINIMAL_CLIENT_HELLO)
    assert server.compression.name == "none"
    # the protocol's default, not the Python client's (which announces its own)
    assert server.peer_stream_window == DEFAULT_STREAM_WINDOW == 32
    assert server.peer_stream_window_bytes == UNLIMITED
    assert server.max_outgoing == Limits().max_message_size


def test_the_announced_stream_window_and_message_size_are_used() -> None:
    server = server_after({**MINIMAL_CLIENT_HELLO, "stream_window": 5, "max_message_size": 99})
    assert (server.peer_stream_window, server.max_outgoing) == (5, 99)
    _, server = pair(limits=Limits(stream_window=7))  # what a Python client announces
    assert server.peer_stream_window == 7


@pytest.mark.parametrize("key", ["protocol", "version", "codec"])
def test_a_client_hello_lacking_a_required_key_is_refused(key: str) -> None:
    hello = {k: v for k, v in MINIMAL_CLIENT_HELLO.items() if k != key}
    with pytest.raises(RemoteProtocolError, match=f"required key '{key}'"):
        server_after(hello)


@pytest.mark.parametrize("key", ["stream_window", "stream_window_bytes", "max_message_size"])
@pytest.mark.parametrize("value", [0, -1, "32", 1.5, True, None])
def test_a_bad_optional_count_in_a_client_hello_is_refused(key: str, value: object) -> None:
    with pytest.raises(RemoteProtocolError, match=key):
        server_after({**MINIMAL_CLIENT_HELLO, key: value})


def test_a_minimal_server_hello_is_accepted() -> None:
    client = client_after({"protocol": "jesus", "version": 1})
    assert client.max_outgoing == Limits().max_message_size
    assert client.send_request("s.m", {"c": "1"}, None, ResponseMode.RESPONSE)[0] == 1


@pytest.mark.parametrize("key", ["protocol", "version"])
def test_a_server_hello_lacking_a_required_key_is_refused(key: str) -> None:
    hello = {k: v for k, v in {"protocol": "jesus", "version": 1}.items() if k != key}
    with pytest.raises(RemoteProtocolError, match=f"required key '{key}'"):
        client_after(hello)


@pytest.mark.parametrize("key", ["max_message_size", "max_inflight_calls"])
def test_a_bad_optional_count_in_a_server_hello_is_refused(key: str) -> None:
    with pytest.raises(RemoteProtocolError, match=key):
        client_after({"protocol": "jesus", "version": 1, key: "many"})


# ----------------------------------------------------------------- a client's ERROR


def test_a_client_error_on_a_call_reads_as_a_cancel() -> None:
    client, server = pair()
    sid, frame = client.send_request("s.m", {"c": "1"}, None, ResponseMode.STREAM)
    server.receive_data(frame)
    abandon = client.send_error(sid, BadFrame("item I cannot decode"))
    assert server.receive_data(abandon) == [ev.CancelReceived(sid)]
    assert server.receive_data(encode_frame(FrameType.ERROR, 0, 99, b"{}")) == []  # not open


def test_a_client_error_on_stream_0_closes_the_connection() -> None:
    client, server = pair()
    (event,) = server.receive_data(client.send_error(0, BadFrame("bye")))
    assert isinstance(event, ev.ErrorReceived) and event.stream_id == 0
    assert isinstance(event.error, BadFrame)


# ----------------------------------------------------------------- PING and PONG


@pytest.mark.parametrize("ftype", [FrameType.PING, FrameType.PONG])
@pytest.mark.parametrize(("stream_id", "payload"), [(1, b"12345678"), (0, b"1234567"), (0, b"")])
@pytest.mark.parametrize("receiver", ["client", "server"])
def test_a_bad_ping_or_pong_is_a_violation(
    ftype: int, stream_id: int, payload: bytes, receiver: str
) -> None:
    client, server = pair()
    if receiver == "client":
        client.send_request("s.m", {"c": "1"}, None, ResponseMode.RESPONSE)  # stream 1 open
    with pytest.raises(RemoteProtocolError, match="stream 0 with 8 bytes"):
        (client if receiver == "client" else server).receive_data(
            encode_frame(ftype, 0, stream_id, payload)
        )


def test_pings_are_8_bytes_at_the_sender_too() -> None:
    client, server = pair()
    assert len(client.send_ping()) == 10 + 8
    with pytest.raises(LocalProtocolError):
        client.send_ping(b"short")
    with pytest.raises(LocalProtocolError):
        server.send_pong(b"123456789")


# ----------------------------------------------------------------- GOAWAY


def request_frame(stream_id: int, mode: int = 2) -> bytes:
    return encode_frame(
        FrameType.REQUEST, mode << 4, stream_id, MsgpackCodec().encode(["s.m", {"c": "1"}, None])
    )


def test_goaway_names_the_last_request_read_even_after_ids_wrapped() -> None:
    client, server = pair()
    server.receive_data(request_frame(MAX_STREAM_ID - 1) + request_frame(MAX_STREAM_ID))
    server.receive_data(request_frame(1))  # the client wrapped: 1 came after MAX_STREAM_ID
    assert max(server.open_streams) == MAX_STREAM_ID
    (goaway,) = client.receive_data(server.send_goaway("draining"))
    assert goaway == ev.GoAwayReceived(1, "draining")
    server.receive_data(request_frame(2, mode=0))  # noResponse requests count: they were read
    assert client.receive_data(server.send_goaway("x")) == [ev.GoAwayReceived(2, "x")]


@pytest.mark.parametrize(
    "payload", [b"{}", b'{"last_stream_id":"7"}', b'{"last_stream_id":-1}', b"[]", b"\xff"]
)
def test_a_malformed_goaway_is_a_violation(payload: bytes) -> None:
    client, _ = pair()
    with pytest.raises(RemoteProtocolError, match="GOAWAY"):
        client.receive_data(encode_frame(FrameType.GOAWAY, 0, 0, payload))


# ----------------------------------------------------------------- PROTOCOL.md, bad envelopes

MSGPACK = MsgpackCodec()


@pytest.mark.parametrize(
    ("payload", "flags", "code"),
    [
        (b"\xc1", 0, "PROTOCOL_ERROR"),  # does not decode
        (b"not zstd", Flag.COMPRESSED, "PROTOCOL_ERROR"),  # does not decompress
        (MSGPACK.encode({"a": 1}), 0, "PROTOCOL_ERROR"),  # not an array
        (MSGPACK.encode(["s.m", {"c": "1"}]), 0, "PROTOCOL_ERROR"),  # 2 elements
        (MSGPACK.encode(["s.m", {"c": "1"}, None, 4]), 0, "PROTOCOL_ERROR"),  # 4 elements
        (MSGPACK.encode([7, {"c": "1"}, None]), 0, "PROTOCOL_ERROR"),  # method not a string
        (
            ZstdCompression().compress(b"\0" * (70 * 1024 * 1024)),
            Flag.COMPRESSED,
            "TOO_LARGE",
        ),  # inflates past max_decompressed_size
        (
            ZstdCompression().compress(
                b"\x93\xa3s.m\x80\xdd" + (4_000_000).to_bytes(4, "big") + b"\x80" * 4_000_000
            ),
            Flag.COMPRESSED,
            "TOO_LARGE",
        ),  # 4 million empty maps: past max_decoded_items, refused before any is built
        (b"\x93\xa3s.m\x80" + b"\x91" * 5000 + b"\xc0", 0, "PROTOCOL_ERROR"),  # too deep
    ],
)
@pytest.mark.parametrize("mode", [0, 2])
def test_an_unreadable_envelope_is_rejected_with_its_code(
    payload: bytes, flags: int, code: str, mode: int
) -> None:
    _, server = pair("msgpack", "zstd")
    (event,) = server.receive_data(encode_frame(FrameType.REQUEST, flags | mode << 4, 5, payload))
    event = off_the_loop(server, event)
    assert isinstance(event, ev.RequestRejected)
    assert (event.stream_id, event.mode.wire, event.error.code) == (5, mode, code)
    assert server.receive_data(request_frame(6)) != []  # the connection goes on


@pytest.mark.parametrize("meta", [[1], "c", None, {}, {"c": ""}, {"c": 5}])
def test_a_bad_meta_reaches_the_dispatcher_which_answers_invalid_request(meta: object) -> None:
    # ProtocolConnection reads only the envelope's shape; meta, method and mode are the
    # dispatcher's to check (INVALID_REQUEST, UNKNOWN_METHOD: tests/tcp/test_bad_input.py).
    _, server = pair()
    payload = MSGPACK.encode(["nope.x", meta, None])
    (event,) = server.receive_data(encode_frame(FrameType.REQUEST, 2 << 4, 5, payload))
    size = len(payload)  # what the request is charged against the in-flight budgets
    assert event == ev.RequestReceived(5, ResponseMode.RESPONSE, "nope.x", meta, None, size)
    with pytest.raises(ValueError):
        Meta.from_wire(meta, ResponseMode.RESPONSE)
