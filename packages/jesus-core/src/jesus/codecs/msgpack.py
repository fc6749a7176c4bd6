"""MessagePack codec, with limits on what decoding may build so hostile input cannot balloon."""

from __future__ import annotations

from typing import Any

import msgpack

from jesus.codecs.base import too_many_items

_ERRORS = (
    msgpack.ExtraData,
    msgpack.FormatError,
    msgpack.StackError,  # nested deeper than the C decoder's stack (1024 levels)
    ValueError,
    TypeError,
    UnicodeDecodeError,
)


class MsgpackCodec:
    name = "msgpack"
    content_type = "application/msgpack"

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)

    def encode(self, value: Any) -> bytes:
        try:
            return self._packer.pack(value)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise ValueError(f"cannot encode as msgpack: {exc}") from exc

    def join(self, parts: list[bytes]) -> bytes:
        """The encoding of the array whose elements encode to `parts`."""
        n = len(parts)
        if n < 16:
            header = bytes((0x90 | n,))
        elif n < 0x10000:
            header = b"\xdc" + n.to_bytes(2, "big")
        else:
            header = b"\xdd" + n.to_bytes(4, "big")
        return header + b"".join(parts)

    def decode(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=True)
        except _ERRORS as exc:
            raise ValueError(f"invalid msgpack: {exc}") from exc

    def decode_limited(self, data: bytes, max_items: int) -> Any:
        """Decode, building at most `max_items` values (containers and what they hold)."""
        if len(data) <= max_items:
            return self.decode(data)  # every value takes a byte at least: nothing to count
        built = 0

        def count(container: Any) -> Any:
            nonlocal built
            built += 1 + len(container) * (2 if type(container) is dict else 1)
            if built > max_items:
                raise too_many_items(max_items)
            return container

        try:
            # Container headers past the limit are refused before anything is allocated;
            # the hooks count what the containers built hold.
            return msgpack.unpackb(
                data,
                raw=False,
                strict_map_key=True,
                max_array_len=max_items,
                max_map_len=max_items,
                list_hook=count,
                object_hook=count,
            )
        except _ERRORS as exc:
            if "exceeds max_" in str(exc):
                raise too_many_items(max_items) from None
            raise ValueError(f"invalid msgpack: {exc}") from exc
