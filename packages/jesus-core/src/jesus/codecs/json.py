"""JSON codec: orjson when installed (about 5x faster), the standard library otherwise.

orjson reads an integer past 64 bits as a float (1e+30) and cannot write one; such numbers
go through the standard library instead, so that every integer is carried exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

from jesus.codecs.base import too_many_items

try:
    import orjson
except ImportError:  # pragma: no cover - depends on the extras installed
    orjson = None  # type: ignore[assignment]

# 19 digits or more may be past orjson's 64-bit range (-2**63 has 19).
_LONG_NUMBER = re.compile(rb"\d{19}")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def _stdlib_dumps(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"cannot encode as JSON: {exc}") from exc


def _stdlib_loads(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"invalid JSON: {exc}") from exc
    except RecursionError:
        raise ValueError("invalid JSON: nested too deep") from None


class JsonCodec:
    name = "json"
    content_type = "application/json"

    def __init__(self) -> None:
        self.backend = "orjson" if orjson is not None else "json"

    def encode(self, value: Any) -> bytes:
        if orjson is None:
            return _stdlib_dumps(value)
        try:
            return orjson.dumps(value)
        except TypeError as exc:
            if "64-bit" not in str(exc):
                raise ValueError(f"cannot encode as JSON: {exc}") from exc
            return _stdlib_dumps(value)  # an integer orjson cannot write

    def join(self, parts: list[bytes]) -> bytes:
        """The encoding of the array whose elements encode to `parts`."""
        return b"[" + b",".join(parts) + b"]"

    def decode(self, data: bytes) -> Any:
        if orjson is None or _LONG_NUMBER.search(data) is not None:
            return _stdlib_loads(data)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from exc

    def decode_limited(self, data: bytes, max_items: int) -> Any:
        """Decode, building at most `max_items` values. Every value but the first is preceded
        by a comma, a colon or an opening bracket, so counting those bounds the values."""
        if (
            len(data) > max_items
            and _count_items(data) > max_items
            # Strings may hold any number of those characters: count again without them.
            and _count_items(_STRING.sub(b'""', data)) > max_items
        ):
            raise too_many_items(max_items)
        return self.decode(data)


def _count_items(data: bytes) -> int:
    return data.count(b",") + data.count(b":") + data.count(b"[") + data.count(b"{") + 1
