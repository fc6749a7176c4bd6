"""Response heads and bodies the server writes: JSON bodies, errors, chunked stream frames."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import Any

from jesus.errors import CallError, ResourceExhausted
from jesus_http import mapping

END_OF_CHUNKS = b"0\r\n\r\n"


def response_head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {mapping.REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@functools.lru_cache(maxsize=64)
def ok_head(content_type: str, encoding: str | None) -> str:
    """The start of a 200 answer's head, compressed with `encoding` or not: the status line
    and the headers that do not change from one answer to the next."""
    head = f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
    return head if encoding is None else f"{head}content-encoding: {encoding}\r\n"


def json_response(
    status: int, body: Any, extra: Sequence[tuple[str, str]] = (), keep_alive: bool = True
) -> bytes:
    payload = json.dumps(body, separators=(",", ":"), default=repr).encode()
    headers = [("content-type", "application/json"), ("content-length", str(len(payload))), *extra]
    if not keep_alive:
        headers.append(("connection", "close"))
    return response_head(status, headers) + payload


def error_response(error: CallError, status: int | None = None, keep_alive: bool = True) -> bytes:
    extra = [(mapping.ERROR_HEADER, error.code)]
    if error.corrid:
        extra.append(("x-jesus-corrid", error.corrid))
    if isinstance(error, ResourceExhausted) and error.retry_after:
        extra.append(("retry-after", str(max(1, math.ceil(error.retry_after)))))
    return json_response(
        status or mapping.STATUS_OF.get(error.code, 500),
        mapping.error_body(error),
        extra,
        keep_alive,
    )


def stream_chunk(codec: Any, obj: Any) -> bytes:
    """One element of a stream body (NDJSON line or length-prefixed msgpack) as one chunk.
    Raises ValueError when `obj` cannot be encoded."""
    data: bytes = codec.encode(obj)
    data = data + b"\n" if codec.name == "json" else mapping.FRAME_LENGTH.pack(len(data)) + data
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
