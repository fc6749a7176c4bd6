"""MessagePack codec, limits on container sizes so hostile input cannot balloon."""

from __future__ import annotations

from typing import Any

import msgpack


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

    def decode(self, data: bytes) -> Any:
        try:
            return msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise ValueError(f"invalid msgpack: {exc}") from exc
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"invalid msgpack: {exc}") from exc
