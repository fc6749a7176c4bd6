from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from jesus.errors import TooLarge


@runtime_checkable
class Codec(Protocol):
    """A serialization format. `decode` raises ValueError on bytes it cannot read.

    A codec may also offer `decode_limited(data, max_items)`, which builds at most `max_items`
    values (each container and each value it holds counts one) and raises the error of
    `too_many_items` past it. Servers use it, so that a small message cannot decode into
    gigabytes of objects; a codec without it is decoded with `decode`, unbounded.

    A codec may offer `join(parts)`: the encoding of the array whose elements encode to
    `parts`. Stream servers use it to send many items in one frame without encoding them
    twice; a codec without it gets its stream items one frame each.
    """

    name: str
    content_type: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


def too_many_items(max_items: int) -> TooLarge:
    return TooLarge(f"message decodes to more than max_decoded_items ({max_items}) values")
