from __future__ import annotations

import zlib

from jesus.errors import TooLarge


class GzipCompression:
    name = "gzip"
    content_encoding = "gzip"

    def __init__(self, level: int = 6) -> None:
        self.level = level

    def compress(self, data: bytes) -> bytes:
        c = zlib.compressobj(self.level, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()

    def decompress(self, data: bytes, max_size: int) -> bytes:
        d = zlib.decompressobj(47)  # gzip or zlib header, detected
        try:
            out = d.decompress(data, max_size + 1)
        except zlib.error as exc:
            raise ValueError(f"invalid gzip data: {exc}") from exc
        if len(out) > max_size or d.unconsumed_tail:
            raise TooLarge(f"gzip payload inflates past the limit of {max_size} bytes")
        if not d.eof:
            raise ValueError("truncated gzip data")
        return out
