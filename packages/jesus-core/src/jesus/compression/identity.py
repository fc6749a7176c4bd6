from __future__ import annotations

from jesus.errors import TooLarge


class NoCompression:
    name = "none"
    content_encoding = "identity"

    def compress(self, data: bytes) -> bytes:
        return data

    def decompress(self, data: bytes, max_size: int) -> bytes:
        if len(data) > max_size:
            raise TooLarge(f"payload of {len(data)} bytes exceeds the limit of {max_size}")
        return data
