"""The HTTP mapping of PROTOCOL.md: status codes, meta headers, content types, stream framing.
Shared by the server and the client."""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from typing import Any

from jesus.compression.base import Compression
from jesus.errors import CallError, InvalidRequest
from jesus.messages import ResponseMode

# Error code -> HTTP status.
STATUS_OF = {
    "UNKNOWN_METHOD": 404,
    "INVALID_REQUEST": 400,
    "INVALID_RESPONSE": 500,
    "DEADLINE_EXCEEDED": 504,
    "UNAVAILABLE": 503,
    "RESOURCE_EXHAUSTED": 429,
    "WRONG_CHANNEL": 421,
    "PERMISSION_DENIED": 403,
    "SEAL_REFUSED": 403,
    "TOO_LARGE": 413,
    "CANCELLED": 499,
    "PROTOCOL_ERROR": 400,
    "REMOTE_FAILURE": 500,
}
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    421: "Misdirected Request",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

# Meta travels in these headers (lower case); the wire key of jesus.messages.Meta beside.
META_HEADERS = {
    "x-jesus-corrid": "c",
    "x-jesus-userid": "u",
    "x-jesus-from": "f",
    "x-jesus-sent-at": "o",
    "x-jesus-deadline-ms": "d",
    "traceparent": "t",
    "x-jesus-channel": "h",
    "x-jesus-event": "e",
    "x-jesus-seal": "s",
    "x-jesus-retries": "r",
}
# W3C trace context's other headers: they travel in the meta's extra map ("x") by these keys.
# Values from another transport's peer go out only as printable ASCII (no header injection).
EXTRA_HEADERS = ("tracestate", "baggage")
_HEADER_OF = {key: header for header, key in META_HEADERS.items()}
MODE_HEADER = "x-jesus-mode"
ERROR_HEADER = "x-jesus-error"

# Content types per codec, and what each accepts on the way in.
CONTENT_TYPES = {"json": "application/json", "msgpack": "application/msgpack"}
CODEC_OF_TYPE = {
    "application/json": "json",
    "text/json": "json",
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
    "application/vnd.msgpack": "msgpack",
}
STREAM_TYPES = {"json": "application/x-ndjson", "msgpack": "application/x-jesus-msgpack-stream"}
CODEC_OF_TYPE.update({content_type: codec for codec, content_type in STREAM_TYPES.items()})
FRAME_LENGTH = struct.Struct("!I")


# Header values parsed once: a client sends the same few every time (bounded: lru_cache).
@functools.lru_cache(maxsize=256)
def codec_for(content_type: str | None) -> str | None:
    """The codec name for a Content-Type (parameters ignored); JSON when there is none."""
    if not content_type:
        return "json"
    return CODEC_OF_TYPE.get(content_type.split(";", 1)[0].strip().lower())


def route_of(target: str) -> tuple[str, tuple[str, ...]]:
    """A request target's path (no query) and its non-empty segments; those of short
    targets are kept (a client calls the same few; a peer's long ones fill no memory)."""
    return _route(target) if len(target) <= 256 else _route.__wrapped__(target)


@functools.lru_cache(maxsize=256)
def _route(target: str) -> tuple[str, tuple[str, ...]]:
    path = target.split("?", 1)[0]
    return path, tuple(p for p in path.split("/") if p)


@functools.lru_cache(maxsize=256)
def answer_codec(accept: str | None, request_codec: str) -> str:
    """The codec to answer in: the first type of Accept that names a codec, else the
    request's own (no Accept, `*/*` or only unknown types)."""
    for part in (accept or "").split(","):
        name = CODEC_OF_TYPE.get(part.split(";", 1)[0].strip().lower())
        if name is not None:
            return name
    return request_codec


def meta_from_headers(headers: dict[str, str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for header, key in META_HEADERS.items():
        value = headers.get(header)
        if value is None:
            continue
        if key in ("d", "r"):
            try:
                meta[key] = int(value)
            except ValueError:
                meta[key] = value  # Meta.from_wire refuses it with a clear message
        elif key == "o":
            try:
                meta[key] = float(value)
            except ValueError:
                meta[key] = value
        else:
            meta[key] = value
    extra = {h: headers[h] for h in EXTRA_HEADERS if h in headers}
    if extra:
        meta["x"] = extra
    return meta


def meta_header_lines(meta: dict[str, Any]) -> str:
    """The meta as request header lines (`name: value` and CR LF each). A value that is not
    printable ASCII (a userid from a tcp peer with a CR LF in it would add headers of its
    own) is refused: InvalidRequest."""
    lines = []
    for key, value in meta.items():  # the few keys present, not every key there may be
        header = _HEADER_OF.get(key)
        if header is None or value is None:
            continue
        kind = type(value)
        if kind is not int and kind is not float:  # digits: nothing in them ends a header
            value = value if kind is str else str(value)
            if not _header_value(value):
                raise InvalidRequest(
                    f"meta {header.removeprefix('x-jesus-')} {value[:40]!r} cannot travel over "
                    "http: a header carries printable ASCII only"
                )
        lines.append(f"{header}: {value}\r\n")
    extra = meta.get("x")
    if extra:
        lines += [
            f"{h}: {v}\r\n"
            for h in EXTRA_HEADERS
            if isinstance(v := extra.get(h), str) and _header_value(v)
        ]
    return "".join(lines)


def _header_value(text: str) -> bool:
    """Printable ASCII (0x20-0x7e), at most 8192 characters: nothing that ends a header."""
    return len(text) <= 8192 and text.isascii() and text.isprintable()


def mode_from_header(value: str | None) -> ResponseMode | None:
    return None if value is None else _MODE_OF.get(value)


_MODE_OF = {mode.value: mode for mode in ResponseMode}  # an enum's call costs several times more


def error_body(error: CallError) -> dict[str, Any]:
    return {"error": error.to_wire()}


def by_content_encoding(compressions: Mapping[str, Compression]) -> dict[str, Compression]:
    """Content-Encoding -> compression (the first of a name): what a body says it is in."""
    table: dict[str, Compression] = {}
    for compression in compressions.values():
        if compression.content_encoding is not None:
            table.setdefault(compression.content_encoding, compression)
    return table


@functools.lru_cache(maxsize=256)
def _encodings(accept_encoding: str) -> frozenset[str]:
    return frozenset(part.split(";", 1)[0].strip().lower() for part in accept_encoding.split(","))


def pick_encoding(accept_encoding: str | None, available: Mapping[str, Any]) -> Any:
    """The compression to answer with: zstd, then gzip, when the client accepts it."""
    if not accept_encoding:
        return None
    offered = _encodings(accept_encoding)
    for name in ("zstd", "gzip"):
        if name in offered and name in available:
            return available[name]
    return None
