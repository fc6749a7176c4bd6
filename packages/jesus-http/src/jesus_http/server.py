"""HTTP server: HTTP/1.1 keep-alive connections, requests answered in order; a client that
goes away cancels what it asked for."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import anyio
import httptools
from anyio.abc import ByteStream, Listener, TaskGroup

from jesus.errors import (
    BadFrame,
    CallError,
    DeadlineExceeded,
    InvalidRequest,
    InvalidResponse,
    TooLarge,
    Unavailable,
    UnknownMethod,
)
from jesus.messages import ResponseMode, new_corrid
from jesus.runtime.dispatcher import CallDispatcher, PreparedCall
from jesus.runtime.spawner import CallSpawner
from jesus.runtime.writer import BROKEN, FrameWriter
from jesus.transport import TransportOptions
from jesus_http import mapping
from jesus_http.parser import Message, RequestParser

log = logging.getLogger("jesus.http.server")

READ_SIZE = 65536


def response_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {mapping.REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class HttpListener:
    def __init__(
        self,
        listener: Listener[Any],
        endpoint: str,
        dispatcher: CallDispatcher,
        options: TransportOptions,
    ) -> None:
        self.endpoint = endpoint
        self._listener = listener
        self.dispatcher = dispatcher
        self.options = options
        self.limits = options.limits
        self._connections: set[HttpConnection] = set()
        self._stopped = anyio.Event()
        self._closing = False
        self.background: CallSpawner | None = None  # noResponse and ack handlers
        self.refused_connections = 0

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.background = CallSpawner(tg, self._background_deadline)
                tg.start_soon(self._accept, tg)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._listener.aclose()

    async def _accept(self, tg: TaskGroup) -> None:
        await self._listener.serve(self._handle, task_group=tg)

    async def _handle(self, stream: ByteStream) -> None:
        if self._closing or len(self._connections) >= self.limits.max_connections:
            self.refused_connections += 1
            reason = (
                "shutting down"
                if self._closing
                else f"at max_connections ({self.limits.max_connections})"
            )
            conn = HttpConnection(stream, self)
            with anyio.move_on_after(1):
                await conn.send_error(Unavailable(f"server is {reason}"), keep_alive=False)
            await stream.aclose()
            return
        conn = HttpConnection(stream, self)
        self._connections.add(conn)
        try:
            await conn.run()
        except Exception:
            log.exception("http connection failed")
        finally:
            self._connections.discard(conn)
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    @property
    def closing(self) -> bool:
        return self._closing

    def _background_deadline(self, key: Any, context: Any) -> None:
        log.warning("%s ran past its deadline", context)

    async def aclose(self) -> None:
        if self._closing:
            return
        self._closing = True
        for conn in list(self._connections):
            conn.closing = True
            if not conn.busy:
                conn.cancel()
        for conn in list(self._connections):
            await conn.idle.wait()
        if self.background is not None:
            await self.background.wait_idle()
        self._stopped.set()


class HttpConnection:
    """One client connection. A reader parses requests as bytes arrive; each request runs in
    a task of its own (no cancel scope or task group per request); requests are answered one
    at a time, in order. A watchdog closes connections that send too slowly or idle too long.
    """

    def __init__(self, stream: ByteStream, listener: HttpListener) -> None:
        self.stream = stream
        self.listener = listener
        self.dispatcher = listener.dispatcher
        self.limits = listener.limits
        self.parser = RequestParser(self.limits.max_header_size, self.limits.max_message_size)
        self.writer = FrameWriter(stream, self.limits.write_buffer_size)
        self.closing = False
        self.busy = False  # a request is being answered
        self.idle = anyio.Event()
        self.idle.set()
        self._scope: anyio.CancelScope | None = None
        self._spawner: CallSpawner | None = None
        self._eof = False
        self._last_activity = anyio.current_time()
        self._partial_since: float | None = None
        self._next_id = 0
        self._stream_frame: Any = None  # set while a stream's chunks are being written

    def cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            self._scope = tg.cancel_scope
            self._spawner = CallSpawner(tg, self._deadline_passed)
            tg.start_soon(self.writer.run, tg.cancel_scope.cancel)
            tg.start_soon(self._watchdog)
            try:
                await self._read_loop()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._spawner.aclose()  # the client left: its calls stop
                    with anyio.move_on_after(1):
                        await self.writer.flush()
                self.idle.set()
            tg.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        while True:
            try:
                data = await self.stream.receive(READ_SIZE)
            except BROKEN:
                self._eof = True
                return
            self._last_activity = anyio.current_time()
            try:
                self.parser.feed(data)
            except httptools.HttpParserError as exc:
                self._finish_with(400, f"malformed HTTP: {exc}")
                return
            partial = self.parser.partial
            if partial is not None and partial.refused == 431:
                self._finish_with(431, partial.refusal)
                return
            self._partial_since = (self._partial_since or self._last_activity) if partial else None
            self._dispatch_next()
            if self.closing and not self.busy:
                return

    async def _watchdog(self) -> None:
        """Cut off a request that takes longer than request_timeout to arrive (slowloris), and
        a connection idle for idle_timeout."""
        limits = self.limits
        while True:
            await anyio.sleep(min(limits.request_timeout, limits.idle_timeout) / 4)
            now = anyio.current_time()
            if (
                self._partial_since is not None
                and now - self._partial_since > limits.request_timeout
            ):
                self._finish_with(408, "request not received within request_timeout")
                with anyio.move_on_after(1):
                    await self.writer.flush()
                self.cancel()
                return
            if (
                not self.busy
                and self._partial_since is None
                and now - self._last_activity > limits.idle_timeout
            ):
                self.cancel()
                return

    def _finish_with(self, status: int, message: str) -> None:
        error = TooLarge(message) if status == 413 else BadFrame(message)
        self.writer.write(error_response(error, status, keep_alive=False))
        self.closing = True

    def _dispatch_next(self) -> None:
        """Start the next complete request, unless one is being answered."""
        if self.busy or not self.parser.ready or self.closing:
            return
        request = self.parser.ready.popleft()
        self.busy = True
        self.idle = anyio.Event()
        assert self._spawner is not None
        self._next_id += 1
        deadline = None
        deadline_ms = request.headers.get("x-jesus-deadline-ms", "")
        if deadline_ms.isdigit():  # the task is cancelled then: no cancel scope per request
            deadline = anyio.current_time() + int(deadline_ms) / 1000
        self._spawner.spawn(
            self._next_id, self._answer, request, deadline=deadline, context=request
        )

    async def _answer(self, request: Message) -> None:
        try:
            keep = await self._respond(request)
            self._stream_frame = None  # cancelled instead, _deadline_passed still needs it
        except Exception:
            log.exception("answering %s %s failed", request.method, request.target)
            keep = False
        if self.writer.full:
            await self.writer.drain()
        self.busy = False
        self._last_activity = anyio.current_time()
        if not keep or self.listener.closing:
            self.closing = True
            self.idle.set()
            await self.writer.flush()
            self.cancel()
            return
        self.idle.set()
        self._dispatch_next()

    def _deadline_passed(self, key: Any, request: Message) -> None:
        corrid = request.headers.get("x-jesus-corrid")
        error = DeadlineExceeded(f"{request.target} ran past the caller's deadline", corrid=corrid)
        if self._stream_frame is not None:  # the head went out: end the stream with the error
            self.writer.write(self._stream_frame(mapping.error_body(error)) + b"0\r\n\r\n")
            self._stream_frame = None
        else:
            self.writer.write(error_response(error, keep_alive=request.keep_alive))
        self.busy = False
        self.idle.set()
        self._dispatch_next()

    async def send_error(
        self, error: CallError, status: int | None = None, keep_alive: bool = True
    ) -> None:
        """For refusals before a connection is served (no writer task yet)."""
        try:
            await self.stream.send(error_response(error, status, keep_alive))
        except BROKEN:
            pass

    def send_json(
        self,
        status: int,
        body: Any,
        extra: Sequence[tuple[str, str]] = (),
        keep_alive: bool = True,
    ) -> None:
        self.writer.write(json_response(status, body, extra, keep_alive))

    # ------------------------------------------------------------------ routing

    async def _respond(self, request: Message) -> bool:
        """Answer one request; returns whether the connection stays open."""
        keep = request.keep_alive and not self.closing
        if request.refused:
            self.writer.write(
                error_response(
                    TooLarge(request.refusal)
                    if request.refused == 413
                    else BadFrame(request.refusal),
                    request.refused,
                    keep_alive=False,
                )
            )
            return False
        path = request.target.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        try:
            if len(parts) == 2 and request.method != "POST":
                error = InvalidRequest(f"use POST to call {parts[0]}.{parts[1]}")
                self.send_json(405, mapping.error_body(error), [("allow", "POST")], keep)
                return keep
            if request.method == "GET":
                return self._describe(parts, keep)
            if len(parts) != 2:
                raise UnknownMethod(f"no route for {request.method} {path}")
            return await self._call(request, f"{parts[0]}.{parts[1]}", keep)
        except CallError as exc:
            self.writer.write(error_response(exc, keep_alive=keep))
            return keep

    def _describe(self, parts: list[str], keep: bool) -> bool:
        methods = self.dispatcher.methods
        services = {entry.service.name: entry.service for entry in methods.values()}
        if parts == ["health"]:
            self.send_json(200, {"status": "ok", "services": sorted(services)}, keep_alive=keep)
        elif not parts:
            body = {"services": {name: describe(svc) for name, svc in sorted(services.items())}}
            self.send_json(200, body, keep_alive=keep)
        elif len(parts) == 1 and parts[0] in services:
            self.send_json(200, describe(services[parts[0]]), keep_alive=keep)
        else:
            raise UnknownMethod(f"no route for GET /{'/'.join(parts)}")
        return keep

    async def _call(self, request: Message, target: str, keep: bool) -> bool:
        options = self.listener.options
        headers = request.headers
        codec = options.codecs.get(mapping.codec_for(headers.get("content-type")) or "")
        if codec is None:
            error = InvalidRequest(
                f"content-type {headers.get('content-type')!r} is not supported; "
                f"use application/json or application/msgpack"
            )
            self.send_json(415, mapping.error_body(error), keep_alive=keep)
            return keep
        encoding = headers.get("content-encoding", "identity").strip().lower()
        compression = next(
            (c for c in options.compressions.values() if c.content_encoding == encoding), None
        )
        if compression is None:
            error = InvalidRequest(
                f"content-encoding {encoding!r} is not supported; use gzip, zstd or identity"
            )
            self.send_json(415, mapping.error_body(error), keep_alive=keep)
            return keep
        body = bytes(request.body)
        try:
            body = compression.decompress(body, self.limits.max_decompressed_size)
        except ValueError as exc:
            raise BadFrame(f"body does not decompress: {exc}") from None
        try:
            data = codec.decode(body) if body else None
        except ValueError as exc:
            raise BadFrame(f"body is not valid {codec.name}: {exc}") from None
        raw_meta = mapping.meta_from_headers(headers)
        raw_meta.setdefault("c", new_corrid())
        entry = self.dispatcher.methods.get(target)
        declared = entry.spec.mode if entry is not None else ResponseMode.RESPONSE
        mode = mapping.mode_from_header(headers.get(mapping.MODE_HEADER)) or declared
        call = self.dispatcher.prepare(target, raw_meta, data, mode)
        accept = mapping.codec_for(headers.get("accept", "").split(",")[0])
        answer_codec = options.codecs.get(accept or "") or codec
        corrid = [("x-jesus-corrid", call.meta.corrid)]
        if mode in (ResponseMode.NO_RESPONSE, ResponseMode.ACK):
            if self.listener.closing:
                raise Unavailable("server is shutting down", corrid=call.meta.corrid)
            self.send_json(202, {"accepted": True, "corrid": call.meta.corrid}, corrid, keep)
            assert self.listener.background is not None
            self.listener.background.spawn(
                call.meta.corrid, self._background, call, deadline=call.deadline, context=target
            )
            return keep
        if mode is ResponseMode.STREAM:
            await self._stream(call, answer_codec, corrid)
            return keep and not self._eof
        result = await self.dispatcher.run(call)
        try:
            payload = answer_codec.encode(result)
        except ValueError as exc:
            raise InvalidResponse(str(exc), corrid=call.meta.corrid) from None
        out = [
            (
                "content-type",
                mapping.CONTENT_TYPES.get(answer_codec.name, answer_codec.content_type),
            )
        ]
        answer_compression = mapping.pick_encoding(
            headers.get("accept-encoding"), options.compressions
        )
        if answer_compression is not None and len(payload) >= self.limits.compress_threshold:
            payload = answer_compression.compress(payload)
            out.append(("content-encoding", answer_compression.content_encoding))
        out += [("content-length", str(len(payload))), *corrid, ("vary", "accept-encoding")]
        if not keep:
            out.append(("connection", "close"))
        await self.writer.send_now(response_head(200, out) + payload)
        return keep

    async def _background(self, call: PreparedCall) -> None:
        try:
            await self.dispatcher.run(call)
        except CallError as exc:
            log.warning("%s call failed after it was accepted: %s", call.meta.mode.value, exc)

    async def _stream(self, call: PreparedCall, codec: Any, corrid: list[tuple[str, str]]) -> None:
        json_lines = codec.name == "json"
        head = [
            ("content-type", mapping.STREAM_TYPES.get(codec.name, codec.content_type)),
            ("transfer-encoding", "chunked"),
            *corrid,
        ]
        writer = self.writer
        writer.write(response_head(200, head))
        items = self.dispatcher.open_stream(call)

        def frame(obj: Any) -> bytes:
            data: bytes = codec.encode(obj)
            data = data + b"\n" if json_lines else mapping.FRAME_LENGTH.pack(len(data)) + data
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        self._stream_frame = frame
        try:
            while True:
                try:
                    item = await items.__anext__()
                    chunk = frame({"item": item})
                except StopAsyncIteration:
                    break
                except ValueError as exc:
                    error = InvalidResponse(str(exc), corrid=call.meta.corrid)
                    writer.write(frame(mapping.error_body(error)))
                    break
                except CallError as exc:
                    writer.write(frame(mapping.error_body(exc)))
                    break
                writer.write(chunk)
                if writer.full:
                    await writer.drain()  # a slow reader holds the handler back
                if writer.closed:
                    self._eof = True
                    return
            writer.write(b"0\r\n\r\n")
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()  # type: ignore[attr-defined]


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
    return json_response(
        status or mapping.STATUS_OF.get(error.code, 500),
        mapping.error_body(error),
        extra,
        keep_alive,
    )


_GONE = object()


def describe(service: Any) -> dict[str, Any]:
    return {
        "name": service.name,
        "version": service.version,
        "description": service.description,
        "methods": {
            name: spec.record().to_json() for name, spec in sorted(service.methods.items())
        },
        "listens": {event: spec.record() for event, spec in sorted(service.listeners.items())},
        "emits": {event: spec.record() for event, spec in sorted(service.emits.items())},
    }
