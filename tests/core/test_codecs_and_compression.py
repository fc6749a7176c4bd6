from __future__ import annotations

import gzip
import os
import zlib

import pytest
import zstandard

from jesus.codecs.json import JsonCodec
from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.gzip import GzipCompression
from jesus.compression.identity import NoCompression
from jesus.compression.zstd import ZstdCompression
from jesus.errors import TooLarge

VALUES = [None, True, 0, -1, 2**40, 1.5, "", "héllo", [1, [2, [3]]], {"a": {"b": [1, "x"]}}]
CODECS = [JsonCodec(), MsgpackCodec()]
COMPRESSIONS = [NoCompression(), GzipCompression(), ZstdCompression()]


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("value", VALUES)
def test_codec_round_trip(codec: JsonCodec | MsgpackCodec, value: object) -> None:
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"\x93\x01", b"\xff\xfe\xfd"])
def test_codec_garbage_is_a_value_error(codec: JsonCodec | MsgpackCodec, garbage: bytes) -> None:
    with pytest.raises(ValueError):
        codec.decode(garbage)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_codec_random_bytes_decode_or_raise_value_error(codec: JsonCodec | MsgpackCodec) -> None:
    for _ in range(200):
        try:
            codec.decode(os.urandom(64))
        except ValueError:
            pass  # random bytes may also happen to be a valid document; anything else is a bug


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_codec_refuses_unencodable_values(codec: JsonCodec | MsgpackCodec) -> None:
    with pytest.raises(ValueError):
        codec.encode({"x": object()})


@pytest.mark.parametrize("comp", COMPRESSIONS, ids=lambda c: c.name)
def test_compression_round_trip(comp: object) -> None:
    data = b"jesus " * 10_000
    packed = comp.compress(data)  # type: ignore[attr-defined]
    assert comp.decompress(packed, len(data)) == data  # type: ignore[attr-defined]


BOMB_SIZE = 200 * 1024 * 1024  # inflates to 200 MiB; the limit below is 1 MiB


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\0" * (1024 * 1024)
    return b"".join(c.compress(chunk) for _ in range(BOMB_SIZE // len(chunk))) + c.flush()


@pytest.fixture(scope="module")
def zstd_bombs() -> list[bytes]:
    with_size = zstandard.ZstdCompressor(level=19).compress(b"\0" * BOMB_SIZE)
    cctx = zstandard.ZstdCompressor(level=3, write_content_size=False)
    without = cctx.compressobj()
    chunk = b"\0" * (1024 * 1024)
    parts = [without.compress(chunk) for _ in range(BOMB_SIZE // len(chunk))]
    return [with_size, b"".join(parts) + without.flush()]


def test_gzip_bomb_is_refused(gzip_bomb: bytes) -> None:
    assert len(gzip_bomb) < 300_000
    with pytest.raises(TooLarge):
        GzipCompression().decompress(gzip_bomb, 1024 * 1024)


def test_zstd_bombs_are_refused(zstd_bombs: list[bytes]) -> None:
    for bomb in zstd_bombs:
        assert len(bomb) < 300_000
        with pytest.raises(TooLarge):
            ZstdCompression().decompress(bomb, 1024 * 1024)


def test_identity_is_bounded_too() -> None:
    with pytest.raises(TooLarge):
        NoCompression().decompress(b"x" * 11, 10)


@pytest.mark.parametrize("comp", [GzipCompression(), ZstdCompression()], ids=lambda c: c.name)
def test_corrupt_or_truncated_input_is_a_value_error(comp: object) -> None:
    packed = comp.compress(b"hello world" * 100)  # type: ignore[attr-defined]
    for bad in (b"garbage!", packed[: len(packed) // 2]):
        with pytest.raises(ValueError):
            comp.decompress(bad, 1 << 20)  # type: ignore[attr-defined]


def test_gzip_interoperates_with_the_standard_library() -> None:
    assert GzipCompression().decompress(gzip.compress(b"abc"), 10) == b"abc"
    assert gzip.decompress(GzipCompression().compress(b"abc")) == b"abc"


# ----------------------------------------------------------------- what decoding may build


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": 1000000000000000000000000000001}',
        b"[18446744073709551616, -9223372036854775809, 9223372036854775807]",
        b'{"s": "12345678901234567890", "n": 123456789012345678901234567890}',
    ],
)
def test_json_carries_every_integer_exactly(text: bytes) -> None:
    import json

    codec = JsonCodec()
    value = codec.decode(text)
    assert value == json.loads(text)  # the standard library is exact
    assert codec.decode(codec.encode(value)) == value


def test_msgpack_refuses_integers_it_cannot_carry() -> None:
    with pytest.raises(ValueError, match="cannot encode"):
        MsgpackCodec().encode({"a": 10**30})


MAPS = b"\xdd" + (50_000).to_bytes(4, "big") + b"\x80" * 50_000  # 50,000 empty maps


@pytest.mark.parametrize(
    ("codec", "data"),
    [
        (MsgpackCodec(), MAPS),
        (MsgpackCodec(), b"\x92" + MAPS + b"\x80"),  # nested: counted by what was built
        (MsgpackCodec(), b"\x92" + (b"\xdc" + (5000).to_bytes(2, "big") + b"\xc0" * 5000) * 2),
        (JsonCodec(), b"[" + b"{}," * 49_999 + b"{}]"),
        (JsonCodec(), b'{"a": [' + b"1," * 9_000 + b'1], "b": [' + b"2," * 9_000 + b"2]}"),
    ],
)
def test_decoding_stops_at_max_items(codec: JsonCodec | MsgpackCodec, data: bytes) -> None:
    with pytest.raises(TooLarge, match="max_decoded_items"):
        codec.decode_limited(data, 10_000)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_values_within_max_items_decode(codec: JsonCodec | MsgpackCodec) -> None:
    value = {"text": "a,b:[{" * 100_000, "list": list(range(9_000))}
    assert codec.decode_limited(codec.encode(value), 10_000) == value


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_deep_nesting_is_a_value_error_not_a_recursion_error(
    codec: JsonCodec | MsgpackCodec,
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000 if codec.name == "json" else b"\x91" * 100_000 + b"\xc0"
    with pytest.raises(ValueError):
        codec.decode_limited(deep, 1_000_000)


def test_the_standard_library_json_path_is_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import jesus.codecs.json as json_codec

    monkeypatch.setattr(json_codec, "orjson", None)
    codec = JsonCodec()
    with pytest.raises(ValueError, match="nested too deep"):
        codec.decode(b"[" * 100_000 + b"]" * 100_000)
    assert codec.decode(codec.encode({"n": 10**30})) == {"n": 10**30}
