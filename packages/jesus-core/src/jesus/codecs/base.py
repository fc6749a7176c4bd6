from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """A serialization format. `decode` raises ValueError on bytes it cannot read."""

    name: str
    content_type: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...
