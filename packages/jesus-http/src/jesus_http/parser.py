"""Incremental request/response parsing on httptools, with the limits checked as bytes arrive."""

from __future__ import annotations

from collections import deque
from typing import Any

import httptools


class Message:
    """One request or response as it is read (slotted: one is made per message)."""

    __slots__ = (
        "body",
        "complete",
        "headers",
        "keep_alive",
        "method",
        "refusal",
        "refused",
        "status",
        "target",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.keep_alive = True
        self.complete = False
        # Set when a limit was passed; the message is then refused, never processed.
        self.refused = 0  # HTTP status to refuse with
        self.refusal = ""


# Header names as they come, lower-cased once: the same few every time (bounded: a peer may
# send any names).
_NAMES: dict[bytes, str] = {}
_NAMES_KEPT = 256


def _name(raw: bytes) -> str:
    name = raw.decode("latin-1").lower()
    if len(_NAMES) < _NAMES_KEPT:
        _NAMES[raw] = name
    return name


class _Collector:
    """httptools callbacks filling Messages; never raises (limits only mark the message)."""

    def __init__(self, max_header_size: int, max_body_size: int, response: bool) -> None:
        self.max_header_size = max_header_size
        self.max_body_size = max_body_size
        self.response = response
        self.ready: deque[Message] = deque()
        self.current: Message | None = None
        self.header_bytes = 0
        self.parser: Any = None

    def on_message_begin(self) -> None:
        self.current = Message()
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        assert self.current is not None
        self.header_bytes += len(url)
        self.current.target += url.decode("latin-1")
        self._check_headers()

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called once per whole header; past the limit nothing more is kept (the refusal is
        # marked after the read, or at the end of the headers).
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_size:
            return
        msg = self.current
        assert msg is not None
        key = _NAMES.get(name) or _name(name)
        text = value.decode("latin-1")
        headers = msg.headers
        known = headers.get(key)
        headers[key] = text if known is None else f"{known}, {text}"  # repeated: joined

    def _check_headers(self) -> bool:
        msg = self.current
        assert msg is not None
        if self.header_bytes > self.max_header_size and not msg.refused:
            msg.refused, msg.refusal = (
                431,
                f"headers exceed max_header_size ({self.max_header_size} bytes)",
            )
        return not msg.refused

    def on_headers_complete(self) -> None:
        msg = self.current
        assert msg is not None
        if not self._check_headers():
            msg.headers = {}  # refused: nothing of it is read
        parser = self.parser
        if self.response:
            msg.status = parser.get_status_code()
        else:
            msg.method = parser.get_method().decode("latin-1")
        version = parser.get_http_version()
        connection = msg.headers.get("connection", "").lower()
        msg.keep_alive = "close" not in connection and (
            version == "1.1" or "keep-alive" in connection
        )
        length = msg.headers.get("content-length")
        if (
            length is not None
            and length.isdigit()
            and int(length) > self.max_body_size
            and not msg.refused
        ):
            msg.refused, msg.refusal = (
                413,
                f"body exceeds max_message_size ({self.max_body_size} bytes)",
            )

    def on_body(self, body: bytes) -> None:
        msg = self.current
        assert msg is not None
        if msg.refused:
            return
        if len(msg.body) + len(body) > self.max_body_size:
            msg.refused, msg.refusal = (
                413,
                f"body exceeds max_message_size ({self.max_body_size} bytes)",
            )
            msg.body.clear()
            return
        msg.body += body

    def on_message_complete(self) -> None:
        msg = self.current
        assert msg is not None
        msg.complete = True
        self.ready.append(msg)
        self.current = None


class _Parser:
    """Bytes in, complete messages out. `feed` raises httptools.HttpParserError on bad HTTP."""

    def __init__(self, parser_class: Any, max_header_size: int, max_body_size: int) -> None:
        response = parser_class is httptools.HttpResponseParser
        self._collector = _Collector(max_header_size, max_body_size, response=response)
        self._parser = parser_class(self._collector)
        self._collector.parser = self._parser

    def feed(self, data: bytes) -> None:
        self._parser.feed_data(data)
        collector = self._collector
        if collector.current is not None and collector.header_bytes > collector.max_header_size:
            collector._check_headers()  # headers still coming: refused before they end

    @property
    def ready(self) -> deque[Message]:
        return self._collector.ready

    @property
    def partial(self) -> Message | None:
        """The message being received, if any (headers over the limit show here first)."""
        return self._collector.current


class RequestParser(_Parser):
    def __init__(self, max_header_size: int, max_body_size: int) -> None:
        super().__init__(httptools.HttpRequestParser, max_header_size, max_body_size)


class ResponseParser(_Parser):
    def __init__(self, max_header_size: int, max_body_size: int) -> None:
        super().__init__(httptools.HttpResponseParser, max_header_size, max_body_size)
