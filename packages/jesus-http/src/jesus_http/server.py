"""HTTP server: HTTP/1.1 keep-alive connections whose requests are answered in order, one at
a time; calls go to the call runner, each with an `HttpReply`. A client that goes away
cancels what it still waits for."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, ClassVar

import anyio
import httptools
from anyio.abc import ByteStream, Listener, TaskGroup

from jesus.errors import BadFrame, CallError, InvalidRequest, TooLarge, Unavailable, UnknownMethod
from jesus.limits import check_message_size
from jesus.messages import ResponseMode, new_corrid
from jesus.payload import Heavy, decode_payload
from jesus.transport import (
    BROKEN,
    CallHandler,
    CallRunner,
    Session,
    TransportOptions,
    peer_of,
    stop_reading_ahead,
)
from jesus.transport.feed import Feed, feed
from jesus.transport.futures import clock_factory
from jesus.transport.traffic import UNCOUNTED
from jesus.transport.writer import FrameWriter
from jesus_http import mapping
from jesus_http.parser import Message, RequestParser
from jesus_http.responses import (
    END_OF_CHUNKS,
    error_response,
    json_response,
    ok_head,
    response_head,
    stream_chunk,
)

log = logging.getLogger("jesus.http.server")

READ_SIZE = 65536
CLOSE_HEADER = "connection: close\r\n"


class HttpServer:
    def __init__(
        self,
        listener: Listener[Any],
        endpoint: str,
        handler: CallHandler,
        options: TransportOptions,
    ) -> None:
        self.endpoint = endpoint
        self._listener = listener
        self.handler = handler
        self.options = options
        self.limits = options.limits
        self.runner = CallRunner(handler, options.limits)
        self.encodings = mapping.by_content_encoding(options.compressions)  # request bodies'
        self._connections: set[HttpServerConnection] = set()
        self._stopped = anyio.Event()
        self.closing = False
        self.refused_connections = 0

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.runner.bind(tg)
                tg.start_soon(self._accept, tg)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.runner.aclose()
                await self._listener.aclose()

    async def _accept(self, tg: TaskGroup) -> None:
        await self._listener.serve(self._handle, task_group=tg)

    async def _handle(self, stream: ByteStream) -> None:
        if self.closing or len(self._connections) >= self.limits.max_connections:
            self.refused_connections += 1
            reason = (
                "shutting down"
                if self.closing
                else f"at max_connections ({self.limits.max_connections})"
            )
            with anyio.move_on_after(1):
                try:
                    error = Unavailable(f"server is {reason}")
                    await stream.send(error_response(error, keep_alive=False))
                except BROKEN:
                    pass
            await stream.aclose()
            return
        conn = HttpServerConnection(stream, self)
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception:
            log.exception("http connection failed")
        finally:
            self._connections.discard(conn)
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    async def aclose(self) -> None:
        if self.closing:
            return
        self.closing = True
        for conn in list(self._connections):
            conn.close_when_idle()
        await self.runner.drain()
        for conn in list(self._connections):
            await conn.closed.wait()
        self._stopped.set()


class HttpServerConnection:
    """One client connection. The reader parses requests as bytes arrive and starts the next
    one once the previous got its answer; a watchdog closes connections that send too
    slowly or idle too long."""

    def __init__(self, stream: ByteStream, server: HttpServer) -> None:
        self.stream = stream
        self.server = server
        self.session: Session = server.runner.session(peer_of(stream))
        self.limits = server.limits
        self.parser = RequestParser(self.limits.max_header_size, self.limits.max_message_size)
        self.writer = FrameWriter(stream, self.limits.write_buffer_size)
        self.closing = False  # answer what is under way, then close
        self.busy = False  # a request is being answered
        self.closed = anyio.Event()
        self._finished = anyio.Event()  # nothing more to do: flush and close
        self._clock = clock_factory()  # no loop look-up per read (a getpid on Python 3.11)
        self._last_activity = self._clock()
        self._partial_since: float | None = None
        self._next_id = 0
        self._dispatching = False
        self._last_words: bytes | None = None  # the closing refusal, once the busy answer left
        self._turn = anyio.Event()  # set when the request being answered got its answer
        self._tasks: TaskGroup | None = None
        self._fed: Feed | None = None  # reads by callback (asyncio over plain tcp)
        self._wake = anyio.Event()  # a fed read stopped reading: the reader task takes over
        self._read_done = False  # nothing more is read from this connection

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tasks = tg
                tg.start_soon(self.writer.run, self._finished.set)
                tg.start_soon(self._watchdog)
                tg.start_soon(self._read_loop)
                await self._finished.wait()
                self.session.close()  # the client left, or we close: its calls stop
                with anyio.move_on_after(1, shield=True):
                    await self.writer.flush()
                tg.cancel_scope.cancel()
        finally:
            self.closed.set()

    def close_when_idle(self) -> None:
        self.closing = True
        if not self.busy:
            self._finished.set()

    async def _read_loop(self) -> None:
        fed = feed(self.stream, self._on_data, self._on_end)
        if fed is not None:
            await self._serve_fed(fed)
            return
        while True:
            await self._backpressure()
            try:
                data = await self.stream.receive(READ_SIZE)
            except BROKEN:
                self._finished.set()
                return
            if not self._take(data):
                return

    def _take(self, data: bytes) -> bool:
        """One read: parsed, and its complete requests started in turn. False once nothing
        more is to be read from this connection."""
        read_at = self._clock()
        try:
            self.parser.feed(data)
        except httptools.HttpParserError as exc:
            self._finish_with(400, f"malformed HTTP: {exc}")
            return False
        partial = self.parser.partial
        if partial is not None and partial.refused == 431:
            self._finish_with(431, partial.refusal)
            return False
        # Only requests count as activity: bytes that start none (say, bare CRLFs) do not
        # keep a connection from its idle timeout.
        self._partial_since = (self._partial_since or read_at) if partial else None
        if self.parser.ready:
            self._last_activity = read_at
        self._dispatch_next()
        if self.closing and not self.busy:
            self._finished.set()
            return False
        return True

    def _on_data(self, data: bytes) -> None:
        """One read, from the event loop's read callback (`jesus.transport.feed`). Reading
        pauses while a request waits for its turn or answers for the peer: the reader task
        resumes it."""
        if self._read_done:
            return
        if not self._take(data):
            self._read_done = True
        elif not (self.parser.ready or self.writer.full):
            return
        if self._fed is not None:
            self._fed.pause()
        self._wake.set()  # (before `feed` returned: _serve_fed pauses on seeing it set)

    def _on_end(self) -> None:
        self._read_done = True
        self._finished.set()

    async def _serve_fed(self, fed: Feed) -> None:
        """The reader task while reads are fed: it waits out what stops reading."""
        self._fed = fed
        if self._wake.is_set():
            fed.pause()  # what anyio had read before the feed stopped reading
        while not self._read_done:
            await self._wake.wait()
            self._wake = anyio.Event()
            await self._backpressure()
            if not self._read_done:
                fed.resume()

    async def _backpressure(self) -> None:
        """Read no further while a whole request waits for its turn or answers wait for the
        peer: a client that pipelines without reading fills its own socket, not our memory."""
        while not self.closing and (self.parser.ready or self.writer.full):
            stop_reading_ahead(self.stream)
            if self.writer.full:
                await self.writer.drain()
            else:
                self._turn = anyio.Event()
                await self._turn.wait()
            self._dispatch_next()

    async def _watchdog(self) -> None:
        """Cut off a request that takes longer than request_timeout to arrive (slowloris), and
        a connection idle for idle_timeout."""
        limits = self.limits
        while True:
            await anyio.sleep(min(limits.request_timeout, limits.idle_timeout) / 4)
            checked_at = self._clock()
            if (
                self._partial_since is not None
                and checked_at - self._partial_since > limits.request_timeout
            ):
                self._finish_with(408, "request not received within request_timeout")
                return
            if (
                not self.busy
                and self._partial_since is None
                and checked_at - self._last_activity > limits.idle_timeout
            ):
                self._finished.set()
                return

    def _finish_with(self, status: int, message: str) -> None:
        error = TooLarge(message) if status == 413 else BadFrame(message)
        answer = error_response(error, status, keep_alive=False)
        self.closing = True
        if self.busy:  # answers go out in order: this one after the answer under way
            self._last_words = answer
        else:
            self.writer.write(answer)
            self._finished.set()

    def request_done(self, keep: bool) -> None:
        """The request being answered got its answer: start the next one."""
        self.busy = False
        self._turn.set()
        self._last_activity = self._clock()
        if self._last_words is not None:  # a refusal that waited for this answer to go first
            self.writer.write(self._last_words)
            self._last_words = None
        if not keep or self.server.closing or self.writer.closed:
            self.closing = True
        if not self.closing:
            self._dispatch_next()
        if self.closing and not self.busy:
            self._finished.set()

    def _dispatch_next(self) -> None:
        """Start complete requests, in order, until one must be waited for. A request answered
        at once ends inside `_start`; the loop, not a recursion, then takes the next."""
        if self._dispatching:
            return
        self._dispatching = True
        try:
            ready = self.parser.ready
            # Past the write limit, the reader takes the next one once the answers drained.
            while ready and not self.busy and not self.closing and not self.writer.full:
                self._start(ready.popleft())
        finally:
            self._dispatching = False

    # ------------------------------------------------------------------ routing

    def _start(self, request: Message) -> None:
        keep = request.keep_alive and not self.closing
        if request.refused:
            error = (
                TooLarge(request.refusal) if request.refused == 413 else BadFrame(request.refusal)
            )
            self.writer.write(error_response(error, request.refused, keep_alive=False))
            self.closing = True
            return
        path, parts = mapping.route_of(request.target)
        try:
            if len(parts) == 2 and request.method != "POST":
                wrong = InvalidRequest(f"use POST to call {parts[0]}.{parts[1]}")
                extra = [("allow", "POST")]
                self.writer.write(json_response(405, mapping.error_body(wrong), extra, keep))
            elif request.method == "GET":
                self.writer.write(json_response(200, self._describe(list(parts)), keep_alive=keep))
            elif len(parts) != 2:
                raise UnknownMethod(f"no route for {request.method} {path}")
            else:
                self._call(request, f"{parts[0]}.{parts[1]}", keep)
        except CallError as exc:
            self.writer.write(error_response(exc, keep_alive=keep))
        if not keep:
            self.closing = True

    def _describe(self, parts: list[str]) -> Any:
        services = self.server.handler.describe()
        if parts == ["health"]:
            return {"status": "ok", "services": sorted(services)}
        if not parts:
            return {"services": dict(sorted(services.items()))}
        if len(parts) == 1 and parts[0] in services:
            return services[parts[0]]
        raise UnknownMethod(f"no route for GET /{'/'.join(parts)}")

    def _call(self, request: Message, target: str, keep: bool) -> None:
        options = self.server.options
        headers = request.headers
        codec = options.codecs.get(mapping.codec_for(headers.get("content-type")) or "")
        if codec is None:
            error = InvalidRequest(
                f"content-type {headers.get('content-type')!r} is not supported; "
                f"use application/json or application/msgpack"
            )
            self.writer.write(json_response(415, mapping.error_body(error), keep_alive=keep))
            return
        encoding = headers.get("content-encoding", "identity").strip().lower()
        compression = self.server.encodings.get(encoding)
        if compression is None:
            error = InvalidRequest(
                f"content-encoding {encoding!r} is not supported; use gzip, zstd or identity"
            )
            self.writer.write(json_response(415, mapping.error_body(error), keep_alive=keep))
            return
        body = bytes(request.body)
        if not body:
            return self._admit(request, target, keep, codec, None, 0)
        try:
            data, size = decode_payload(codec, compression, body, True, self.limits)
        except Heavy:
            assert self._tasks is not None
            self.busy = True  # the next request waits for this one's answer
            self._tasks.start_soon(self._call_heavy, request, target, keep, codec, compression)
            return None
        self._admit(request, target, keep, codec, data, size)

    async def _call_heavy(
        self, request: Message, target: str, keep: bool, codec: Any, compression: Any
    ) -> None:
        try:
            data, size = await self.server.runner.offload(
                decode_payload, codec, compression, bytes(request.body), True, self.limits, False
            )
            self._admit(request, target, keep, codec, data, size)
        except CallError as exc:
            self.writer.write(error_response(exc, keep_alive=keep))
            self.request_done(keep)

    def _admit(
        self, request: Message, target: str, keep: bool, codec: Any, data: Any, size: int
    ) -> None:
        headers = request.headers
        options = self.server.options
        raw_meta = mapping.meta_from_headers(headers)
        corrid = raw_meta.get("c")
        if corrid is None:
            corrid = raw_meta["c"] = new_corrid()
        declared = self.server.handler.declared_mode(target) or ResponseMode.RESPONSE
        mode = mapping.mode_from_header(headers.get(mapping.MODE_HEADER)) or declared
        answer = options.codecs.get(mapping.answer_codec(headers.get("accept"), codec.name))
        reply = HttpReply(self, request, answer or codec, keep, corrid)
        self.busy = True
        self._next_id += 1
        self.session.admit(self._next_id, target, raw_meta, data, mode, reply, size)


class HttpReply:
    """The answer of one request: a JSON/msgpack body, a 202 for ack and noResponse, or a
    chunked stream whose head goes out with the first item."""

    __slots__ = (
        "_done",
        "_head_sent",
        "codec",
        "conn",
        "corrid",
        "keep",
        "meter",
        "open",
        "request",
    )
    # Every HTTP request gets an answer: refusals of noResponse calls too, and a 202 for them.
    always_answers: ClassVar[bool] = True

    def __init__(
        self, conn: HttpServerConnection, request: Message, codec: Any, keep: bool, corrid: Any
    ) -> None:
        self.conn = conn
        self.request = request
        self.codec = codec
        self.keep = keep
        self.corrid = corrid
        self.open = True
        self.meter = UNCOUNTED  # the runner's, once the call is admitted
        self._head_sent = False
        self._done = False

    def _corrid(self) -> list[tuple[str, str]]:
        return [("x-jesus-corrid", str(self.corrid))]

    def ack(self) -> None:
        self.open = False
        body = {"accepted": True, "corrid": self.corrid}
        response = json_response(202, body, self._corrid(), self.keep)
        self.meter.sent += _body_size(response)
        self.conn.writer.write(response)
        self.close()

    def result(self, value: Any) -> Awaitable[None] | None:
        codec, limits = self.codec, self.conn.limits
        payload = codec.encode(value)
        check_message_size(len(payload), limits.max_message_size)
        content_type = mapping.CONTENT_TYPES.get(codec.name, codec.content_type)
        compression = mapping.pick_encoding(
            self.request.headers.get("accept-encoding"), self.conn.server.options.compressions
        )
        encoding = None
        if compression is not None and len(payload) >= limits.compress_threshold:
            payload = compression.compress(payload)
            encoding = compression.content_encoding
        head = (
            f"{ok_head(content_type, encoding)}content-length: {len(payload)}\r\n"
            f"x-jesus-corrid: {self.corrid}\r\nvary: accept-encoding\r\n"
            f"{'' if self.keep else CLOSE_HEADER}\r\n"
        )
        self.open = False
        self.meter.sent += len(payload)
        # Queued, not sent from this task: the call's deadline or cancel must not cut an
        # answer off halfway on the wire.
        writer = self.conn.writer
        writer.write(head.encode("latin-1") + payload)
        return writer.drain() if writer.full else None

    def error(self, error: CallError) -> None:
        self.open = False
        if self._head_sent:  # the stream is under way: it ends with the error as its last element
            chunk = stream_chunk(self.codec, mapping.error_body(error))
            self.meter.sent += len(chunk)
            self.conn.writer.write(chunk + END_OF_CHUNKS)
        else:
            response = error_response(error, keep_alive=self.keep)
            self.meter.sent += _body_size(response)
            self.conn.writer.write(response)

    def _head(self) -> None:
        if not self._head_sent:
            self._head_sent = True
            codec = self.codec
            head = [
                ("content-type", mapping.STREAM_TYPES.get(codec.name, codec.content_type)),
                ("transfer-encoding", "chunked"),
                *self._corrid(),
            ]
            self.conn.writer.write(response_head(200, head))

    def item(self, value: Any) -> Awaitable[None] | None:
        chunk = stream_chunk(self.codec, {"item": value})
        check_message_size(len(chunk), self.conn.limits.max_message_size)
        self._head()
        self.meter.sent += len(chunk)
        writer = self.conn.writer
        writer.write(chunk)
        if writer.full:
            return writer.drain()  # a slow reader holds the handler back
        if writer.closed:
            self.open = False
        return None

    def end(self) -> None:
        self._head()
        self.open = False
        self.conn.writer.write(END_OF_CHUNKS)

    def close(self) -> None:
        if self.open:  # it ends unanswered: the connection can no longer stay in step
            self.keep = False
        self.open = False
        if not self._done:
            self._done = True
            self.conn.request_done(self.keep)


def _body_size(response: bytes) -> int:
    """The size of a whole response's body: what is counted of it, as on the client."""
    return len(response) - response.index(b"\r\n\r\n") - 4
