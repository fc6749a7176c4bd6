"""Datagram layout (golden vector) and the de-duplication window, without sockets."""

from __future__ import annotations

import pytest

from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.identity import NoCompression
from jesus.compression.zstd import ZstdCompression
from jesus.errors import BadFrame, TooLarge
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.protocol.datagram import DatagramCodec, decode_datagram, encode_datagram
from jesus.protocol.dedup import DedupWindow
from jesus.protocol.frames import FrameType

# REQUEST calc.add {"c":"x-1"} {"a":1,"b":2}, mode response, message id 1, msgpack, none
REQUEST = (
    "4a53"
    "01"
    "10"
    "20"
    "00"
    "0000000000000001"
    "07" + b"msgpack".hex() + "04" + b"none".hex() + "93"
    "a8" + b"calc.add".hex() + "81"
    "a163"
    "a3" + b"x-1".hex() + "82"
    "a161"
    "01"
    "a162"
    "02"
)


def test_golden_request_datagram() -> None:
    codec = DatagramCodec(MsgpackCodec(), NoCompression(), Limits())
    envelope = ["calc.add", {"c": "x-1"}, {"a": 1, "b": 2}]
    datagram = codec.pack(FrameType.REQUEST, 1, envelope, ResponseMode.RESPONSE)
    assert datagram.hex() == REQUEST
    parsed = decode_datagram(datagram)
    assert (parsed.type, parsed.mode, parsed.message_id, parsed.codec, parsed.compression) == (
        FrameType.REQUEST,
        ResponseMode.RESPONSE,
        1,
        "msgpack",
        "none",
    )
    assert codec.unpack(parsed)[0] == envelope


def test_ack_datagram_has_an_empty_payload() -> None:
    ack = encode_datagram(FrameType.ACK, 2**64 - 1, MsgpackCodec(), NoCompression(), b"")
    assert ack.hex() == "4a5301120000ffffffffffffffff07" + b"msgpack".hex() + "04" + b"none".hex()


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"JS",
        bytes.fromhex(REQUEST)[:15],
        b"XX" + bytes.fromhex(REQUEST)[2:],
        bytes.fromhex(REQUEST)[:2] + b"\x02" + bytes.fromhex(REQUEST)[3:],
    ],
)
def test_bad_datagrams_are_refused(bad: bytes) -> None:
    with pytest.raises(BadFrame):
        decode_datagram(bad)


def test_compression_is_applied_before_the_size_check() -> None:
    limits = Limits(max_datagram_size=1000)
    text = "x" * 50_000
    zstd = DatagramCodec(MsgpackCodec(), ZstdCompression(), limits)
    assert len(zstd.pack(FrameType.RESPONSE, 1, text, ResponseMode.RESPONSE)) < 1000
    with pytest.raises(TooLarge, match="stream channel"):
        DatagramCodec(MsgpackCodec(), NoCompression(), limits).pack(
            FrameType.RESPONSE, 1, text, ResponseMode.RESPONSE
        )


def test_dedup_window_drops_repeats_and_replays_answers() -> None:
    window = DedupWindow(window=10, capacity=100)
    assert window.check("a", now=0) == (False, None)
    assert window.check("a", now=1) == (True, None)  # still running: drop
    window.answered("a", b"answer")
    assert window.check("a", now=2) == (True, b"answer")  # answered: send it again
    assert window.check("a", now=11) == (False, None)  # forgotten after the window


def test_dedup_window_keeps_a_message_until_its_deadline() -> None:
    window = DedupWindow(window=1, capacity=100)
    window.check("a", now=0, deadline=30)
    assert window.check("a", now=20) == (True, None)


def test_dedup_window_is_bounded() -> None:
    window = DedupWindow(window=100, capacity=10)
    for i in range(25):
        window.check(i, now=0)
    assert len(window) == 10 and window.evicted_early == 15


def test_names_seen_are_remembered_within_a_bound() -> None:
    """Anyone may send datagrams: their codec names fill no memory past the bound."""
    from jesus.protocol import datagram

    for i in range(3 * datagram._NAMES_KEPT):
        named = type("C", (), {"name": f"codec{i}"})()
        dg = decode_datagram(encode_datagram(FrameType.REQUEST, i, named, NoCompression(), b"\x90"))
        assert (dg.codec, dg.compression, dg.message_id) == (f"codec{i}", "none", i)
    assert len(datagram._NAMES) <= datagram._NAMES_KEPT
