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
