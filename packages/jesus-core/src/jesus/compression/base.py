from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Compression(Protocol):
    """A compression. `decompress` must never produce more than `max_size` bytes: past it,
    raise `jesus.errors.TooLarge`; on corrupt input, raise ValueError."""

    name: str
    # HTTP Content-Encoding token, or None when the compression has none.
    content_encoding: str | None

    def compress(self, data: bytes) -> bytes: ...

    def decompress(self, data: bytes, max_size: int) -> bytes: ...
