"""HTTP client: a pool of keep-alive connections per endpoint, one request at a time on each."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import anyio
import httptools
from anyio.abc import ByteStream, TaskGroup

from jesus.errors import (
    BadFrame,
    CallError,
    ConnectionLost,
    DeadlineExceeded,
    InvalidRequest,
    RemoteFailure,
    TooLarge,
    Unavailable,
    error_from_wire,
)
from jesus.limits import check_message_size
from jesus.messages import Meta, ResponseMode
from jesus.transport import (
    BROKEN,
    OutgoingCall,
    TransportOptions,
    connect_errors,
    explain_tls,
    unreachable,
)
from jesus.transport.feed import Feed, feed
from jesus.transport.futures import now
from jesus.transport.writer import direct_send
from jesus_http import mapping
from jesus_http.parser import Message, ResponseParser

READ_SIZE = 65536
# Request heads kept made, one per (endpoint, target, codec, mode).
MAX_HEADS = 1024
# Body bytes read ahead of a stream's consumer before reading pauses.
READ_AHEAD = 4 * READ_SIZE
Connector = Callable[[str], Awaitable[ByteStream]]


class HttpClientConnection:
    def __init__(self, stream: ByteStream, options: TransportOptions) -> None:
        self.stream = stream
        self.limits = options.limits
        self.parser = ResponseParser(self.limits.max_header_size, self.limits.max_message_size)
        self.reused = False
        self.ended = False  # the server closed it, or it broke
        self._direct = direct_send(stream)
        # Reads by callback (asyncio over plain tcp), else from the stream.
        self._fed: Feed | None = feed(stream, self._on_data, self._on_end)
        # Kept: on Python 3.11 every look-up of the running loop is a system call (getpid).
        self._loop = asyncio.get_running_loop() if self._fed is not None else None
        self._waiter: Any = None  # a future: a read is awaited
        self._failure: CallError | None = None  # what a fed read met
        self._deadline: float | None = None  # the request's, while fed reads wait for it

    async def exchange(self, data: bytes, deadline: float | None) -> Message:
        """Send a request and read its whole response; TimeoutError past `deadline`. Fed, a
        wait for a read is given a timer (a cancel scope per request costs 7 us), and the
        exchange runs in this one coroutine and `_receive` (each await resumes through every
        coroutine under it)."""
        if self._fed is None:
            scope = anyio.CancelScope(deadline=math.inf if deadline is None else deadline)
            with scope:
                await self.send(data)
                message = await self.read_head()
                await self.read_rest(message)
            if scope.cancelled_caught:
                raise TimeoutError
            return message
        self._deadline = deadline
        try:
            direct = self._direct
            sent = 0 if direct is None else direct(data)
            if sent < len(data):
                await self._send_rest(data[sent:])
            ready = self.parser.ready
            while not ready:
                await self._receive()
            return ready.popleft()
        finally:
            self._deadline = None

    async def send(self, data: bytes) -> None:
        # Straight to the socket when it takes it all: the read that follows yields anyway.
        if self._direct is not None:
            sent = self._direct(data)
            if sent == len(data):
                return
            data = data[sent:]
        await self._send_rest(data)

    async def _send_rest(self, data: bytes) -> None:
        if self._deadline is None:
            await self.stream.send(data)
            return
        with anyio.fail_after(max(0.0, self._deadline - now())):  # a full socket: rare
            await self.stream.send(data)

    async def read_head(self) -> Message:
        """Read until the response head is complete (the body may follow in pieces)."""
        while True:
            if self.parser.ready:
                return self.parser.ready.popleft()
            partial = self.parser.partial
            if partial is not None and partial.status:
                return partial
            await self._receive()

    async def read_rest(self, message: Message) -> None:
        while not message.complete:
            await self._receive()
        self.done_with(message)

    def done_with(self, message: Message) -> None:
        """Forget a complete response, so the next read starts with the next one."""
        if self.parser.ready and self.parser.ready[0] is message:
            self.parser.ready.popleft()

    async def _receive(self) -> None:
        """Until more of the response came. Raises what the stream raises at its end."""
        fed = self._fed
        if fed is None:
            self._parse(await self.stream.receive(READ_SIZE))
            return
        if self._failure is None and not self.ended:
            fed.resume()  # paused when a stream's consumer fell behind
            loop = self._loop
            assert loop is not None
            self._waiter = waiter = loop.create_future()
            deadline = self._deadline
            timer = None if deadline is None else loop.call_at(deadline, self._expire)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        if self._failure is not None:
            raise self._failure
        if self.ended:
            raise anyio.EndOfStream

    def _parse(self, data: bytes) -> None:
        try:
            self.parser.feed(data)
        except httptools.HttpParserError as exc:
            raise BadFrame(f"malformed HTTP response: {exc}") from None

    def _on_data(self, data: bytes) -> None:
        """A read, from the event loop's read callback (`jesus.transport.feed`)."""
        try:
            self._parse(data)
        except BadFrame as exc:
            self._failure = exc
        partial = self.parser.partial
        too_far = partial is not None and len(partial.body) > READ_AHEAD
        if (self._failure is not None or too_far) and self._fed is not None:
            self._fed.pause()  # bounded: what a stream's consumer has not taken yet
        self._wake()

    def _on_end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _expire(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError())


class HttpClient:
    def __init__(
        self, connect: Connector, options: TransportOptions, task_group: TaskGroup
    ) -> None:
        self._connect = connect
        self._options = options
        self._limits = options.limits
        self._idle: dict[
            str, list[HttpClientConnection]
        ] = {}  # kept-alive connections per endpoint
        self._heads: dict[tuple[str, str, str, ResponseMode], str] = {}
        self._encodings = mapping.by_content_encoding(options.compressions)  # response bodies'

    def _idle_connection(self, endpoint: str) -> HttpClientConnection | None:
        """The last kept-alive connection to `endpoint` if the server has not closed it: a
        call takes it without a coroutine (`_acquire` drops the closed ones)."""
        idle = self._idle.get(endpoint)
        if not idle or idle[-1].ended:
            return None
        conn = idle.pop()
        conn.reused = True
        return conn

    async def _acquire(self, endpoint: str) -> HttpClientConnection:
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if conn.ended:  # the server closed it while it was idle
                await self._close(conn)
                continue
            conn.reused = True
            return conn
        with connect_errors(endpoint):
            stream = await self._connect(endpoint)
        return HttpClientConnection(stream, self._options)

    def _kept(self, endpoint: str, conn: HttpClientConnection, keep: bool) -> bool:
        """Put `conn` back among the idle ones; False when it is to be closed instead."""
        idle = self._idle.setdefault(endpoint, [])
        if keep and len(idle) < self._limits.max_connections:
            idle.append(conn)
            return True
        return False

    async def _release(self, endpoint: str, conn: HttpClientConnection, keep: bool) -> None:
        if not self._kept(endpoint, conn, keep):
            await self._close(conn)

    @staticmethod
    async def _close(conn: HttpClientConnection) -> None:
        with anyio.CancelScope(shield=True):
            await conn.stream.aclose()

    def _head_start(self, call: OutgoingCall, mode: ResponseMode) -> str:
        """The request line and the headers that depend only on the target, made once."""
        key = (call.endpoint, call.target, call.codec.name, mode)
        start = self._heads.get(key)
        if start is None:
            service, _, name = call.target.partition(".")
            content_type = mapping.CONTENT_TYPES.get(call.codec.name, call.codec.content_type)
            start = (
                f"POST /{service}/{name} HTTP/1.1\r\n"
                f"host: {urlsplit(call.endpoint).netloc}\r\n"
                f"content-type: {content_type}\r\n"  # no accept: answered in the same codec
                "accept-encoding: zstd, gzip\r\n"
                f"{mapping.MODE_HEADER}: {mode.value}\r\n"
            )
            if len(self._heads) >= MAX_HEADS:
                self._heads.clear()  # targets are the callers': keep the memory bounded
            self._heads[key] = start
        return start

    def _request_bytes(self, call: OutgoingCall, mode: ResponseMode) -> bytes:
        codec, compression, meta = call.codec, call.compression, call.meta
        try:
            body: bytes = codec.encode(call.data)
        except ValueError as exc:
            raise InvalidRequest(str(exc), corrid=meta.corrid) from None
        try:
            lines = mapping.meta_header_lines(meta.to_wire())
        except InvalidRequest as exc:
            exc.corrid = meta.corrid
            raise
        if (
            compression.content_encoding not in (None, "identity")
            and len(body) >= self._limits.compress_threshold
        ):
            body = compression.compress(body)
            lines += f"content-encoding: {compression.content_encoding}\r\n"
        try:
            check_message_size(len(body), self._limits.max_message_size)
        except TooLarge as exc:
            exc.corrid = meta.corrid
            raise
        call.meter().sent += len(body)
        head = f"{self._head_start(call, mode)}{lines}content-length: {len(body)}\r\n\r\n"
        return head.encode("latin-1") + body

    async def request(self, call: OutgoingCall) -> Any:
        endpoint, meta, deadline = call.endpoint, call.meta, call.deadline
        raw = self._request_bytes(call, call.mode)
        for attempt in range(2):
            conn = self._idle_connection(endpoint) or await self._acquire(endpoint)
            keep = False
            try:
                head = await conn.exchange(raw, deadline)
                keep = head.keep_alive
            except TimeoutError:
                raise DeadlineExceeded(
                    f"{call.target}: no answer over http before the deadline", corrid=meta.corrid
                ) from None
            except BROKEN as exc:
                if conn.reused and attempt == 0 and not conn.parser.partial:
                    continue  # a kept-alive connection the server had closed: try a fresh one
                if explain_tls(exc) is not None:  # TLS 1.3 tells of a refused certificate late
                    raise unreachable(
                        f"{endpoint} refused the connection", exc, meta.corrid
                    ) from None
                raise ConnectionLost(
                    f"connection to {endpoint} broke: {str(exc) or type(exc).__name__}",
                    corrid=meta.corrid,
                ) from None
            finally:
                if not self._kept(endpoint, conn, keep):  # kept: no coroutine
                    await self._close(conn)
            call.meter().received += len(head.body)
            # Outside the timeout's try: a DEADLINE_EXCEEDED the server sent is a TimeoutError.
            return self._result(head, meta)
        raise Unavailable(f"cannot reach {endpoint}")  # pragma: no cover - loop always returns

    def _decompress(self, message: Message, body: bytes) -> bytes:
        encoding = message.headers.get("content-encoding", "identity").strip().lower()
        if encoding == "identity":
            return body
        compression = self._encodings.get(encoding)
        if compression is None:
            raise BadFrame(f"response content-encoding {encoding!r} is not supported")
        try:
            return compression.decompress(body, self._limits.max_decompressed_size)
        except ValueError as exc:
            raise BadFrame(f"response body does not decompress: {exc}") from None

    def _codec(self, message: Message) -> Any:
        name = mapping.codec_for(message.headers.get("content-type"))
        codec = self._options.codecs.get(name or "")
        if codec is None:
            raise BadFrame(
                f"response content-type {message.headers.get('content-type')!r} is not supported"
            )
        return codec

    def _result(self, message: Message, meta: Meta) -> Any:
        if message.refused:
            raise TooLarge(message.refusal, corrid=meta.corrid)
        body = self._decompress(message, bytes(message.body))
        if message.status == 202:
            return None
        if message.status == 200:
            try:
                return self._codec(message).decode(body) if body else None
            except ValueError as exc:
                raise BadFrame(f"response body is not valid: {exc}", corrid=meta.corrid) from None
        raise self._error(message.status, body, meta)

    @staticmethod
    def _error(status: int, body: bytes, meta: Meta) -> CallError:
        try:
            raw = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            return RemoteFailure(f"HTTP {status}: {body[:200]!r}", corrid=meta.corrid, remote=True)
        return error_from_wire(raw, meta.corrid)

    async def stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        endpoint, meta = call.endpoint, call.meta
        raw = self._request_bytes(call, ResponseMode.STREAM)
        conn = await self._acquire(endpoint)
        head: Message | None = None
        try:
            try:
                await conn.send(raw)
                head = await conn.read_head()
            except BROKEN as exc:
                raise ConnectionLost(
                    f"connection to {endpoint} broke: {exc}", corrid=meta.corrid
                ) from None
            meter = call.meter()
            if head.status != 200:
                await conn.read_rest(head)
                meter.received += len(head.body)
                self._result(head, meta)  # raises the error the server sent
                raise RemoteFailure(
                    f"HTTP {head.status} where a stream was expected", corrid=meta.corrid
                )
            answer = self._codec(head)
            json_lines = answer.name == "json"
            buffer = bytearray()
            while True:
                meter.received += len(head.body)
                buffer += bytes(head.body)
                head.body.clear()
                for obj in _split(buffer, json_lines, answer, self._limits.max_message_size):
                    if "error" in obj:
                        raise error_from_wire(obj["error"], meta.corrid)
                    yield obj["item"]
                if head.complete:
                    conn.done_with(head)
                    if buffer:
                        raise BadFrame("stream ended inside an item", corrid=meta.corrid)
                    return
                try:
                    await conn._receive()
                except BROKEN as exc:
                    raise ConnectionLost(
                        f"stream from {endpoint} broke: {exc}", corrid=meta.corrid
                    ) from None
                # Reads that come at once never give the caller's timer a wait to fire in.
                if call.deadline is not None and now() >= call.deadline:
                    raise DeadlineExceeded(
                        f"{call.target}: the stream ran past its deadline", corrid=meta.corrid
                    )
        finally:
            # A stream left early cannot be resumed on this connection: closing it is what
            # tells the server to stop the handler.
            # Only a response read to its end leaves the connection ready for the next request.
            reusable = head is not None and head.complete and head.keep_alive
            if head is not None and head.complete:
                conn.done_with(head)
            await self._release(endpoint, conn, reusable)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                with anyio.CancelScope(shield=True):
                    await conn.stream.aclose()


def _split(buffer: bytearray, json_lines: bool, codec: Any, limit: int) -> list[Any]:
    """Whole items at the front of `buffer` (removed from it)."""
    out: list[Any] = []
    while True:
        if json_lines:
            end = buffer.find(b"\n")
            if end < 0:
                if len(buffer) > limit:
                    raise TooLarge("stream item exceeds max_message_size")
                return out
            line, rest = bytes(buffer[:end]), end + 1
        else:
            if len(buffer) < 4:
                return out
            (size,) = mapping.FRAME_LENGTH.unpack_from(buffer)
            if size > limit:
                raise TooLarge("stream item exceeds max_message_size")
            if len(buffer) < 4 + size:
                return out
            line, rest = bytes(buffer[4 : 4 + size]), 4 + size
        del buffer[:rest]
        try:
            obj = codec.decode(line)
        except ValueError as exc:
            raise BadFrame(f"bad stream item: {exc}") from None
        if not isinstance(obj, dict) or not ({"item", "error"} & obj.keys()):
            raise BadFrame('stream items must be {"item": ...} or {"error": ...}')
        out.append(obj)
