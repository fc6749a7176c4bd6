"""HTTP server: one task per connection, requests answered in order (HTTP/1.1 keep-alive).

While a handler runs, the connection is watched: a client that goes away cancels it.
"""

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
    InvalidRequest,
    InvalidResponse,
    TooLarge,
    Unavailable,
    UnknownMethod,
)
from jesus.messages import ResponseMode, new_corrid
from jesus.runtime.dispatcher import CallDispatcher, PreparedCall
from jesus.runtime.spawner import CallSpawner
from jesus.transport import TransportOptions
from jesus_http import mapping
from jesus_http.parser import Message, RequestParser

log = logging.getLogger("jesus.http.server")

READ_SIZE = 65536
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


class PeerGone(Exception):
    """The client closed the connection."""


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
    def __init__(self, stream: ByteStream, listener: HttpListener) -> None:
        self.stream = stream
        self.listener = listener
        self.dispatcher = listener.dispatcher
        self.limits = listener.limits
        self.parser = RequestParser(self.limits.max_header_size, self.limits.max_message_size)
        self.closing = False
        self.busy = False
        self.idle = anyio.Event()
        self.idle.set()
        self._scope: anyio.CancelScope | None = None
        self._eof = False

    def cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> None:
        with anyio.CancelScope() as self._scope:
            while not self.closing:
                try:
                    request = await self._next_request()
                except PeerGone:
                    return
                except TimeoutError:
                    await self._refuse(408, "request not received within request_timeout")
                    return
                except httptools.HttpParserError as exc:
                    await self._refuse(400, f"malformed HTTP: {exc}")
                    return
                if request is None:
                    return
                self.busy = True
                self.idle = anyio.Event()
                try:
                    keep = await self._respond(request)
                finally:
                    self.busy = False
                    self.idle.set()
                if not keep:
                    return

    async def _receive(self) -> None:
        try:
            data = await self.stream.receive(READ_SIZE)
        except BROKEN:
            self._eof = True
            raise PeerGone from None
        self.parser.feed(data)

    async def _next_request(self) -> Message | None:
        ready = self.parser.ready
        if not ready and self.parser.partial is None:
            # Idle between requests: wait for the first byte of the next one.
            with anyio.move_on_after(self.limits.idle_timeout) as idle:
                while not ready and self.parser.partial is None:
                    await self._receive()
            if idle.cancelled_caught:
                return None
        with anyio.fail_after(self.limits.request_timeout):
            while not ready:
                partial = self.parser.partial
                if partial is not None and partial.refused == 431:
                    return partial  # answer now; the rest of the head never needs reading
                await self._receive()
        return ready.popleft()

    async def _refuse(self, status: int, message: str) -> None:
        error = BadFrame(message) if status != 413 else TooLarge(message)
        with anyio.move_on_after(1):
            await self.send_error(error, status=status, keep_alive=False)

    async def send(self, data: bytes) -> None:
        try:
            await self.stream.send(data)
        except BROKEN:
            raise PeerGone from None

    async def send_json(
        self,
        status: int,
        body: Any,
        extra: Sequence[tuple[str, str]] = (),
        keep_alive: bool = True,
    ) -> None:
        payload = json.dumps(body, separators=(",", ":"), default=repr).encode()
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
            *extra,
        ]
        if not keep_alive:
            headers.append(("connection", "close"))
        await self.send(response_head(status, headers) + payload)

    async def send_error(
        self, error: CallError, status: int | None = None, keep_alive: bool = True
    ) -> None:
        status = status or mapping.STATUS_OF.get(error.code, 500)
        extra = [(mapping.ERROR_HEADER, error.code)]
        if error.corrid:
            extra.append(("x-jesus-corrid", error.corrid))
        await self.send_json(status, mapping.error_body(error), extra, keep_alive)

    # ------------------------------------------------------------------ routing

    async def _respond(self, request: Message) -> bool:
        """Answer one request; returns whether the connection stays open."""
        keep = request.keep_alive and not self.closing
        if request.refused:
            await self._refuse(request.refused, request.refusal)
            return False
        path = request.target.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        try:
            if len(parts) == 2 and request.method != "POST":
                error = InvalidRequest(f"use POST to call {parts[0]}.{parts[1]}")
                await self.send_json(405, mapping.error_body(error), [("allow", "POST")], keep)
                return keep
            if request.method == "GET":
                return await self._describe(parts, keep)
            if len(parts) != 2:
                raise UnknownMethod(f"no route for {request.method} {path}")
            return await self._call(request, f"{parts[0]}.{parts[1]}", keep)
        except PeerGone:
            return False
        except CallError as exc:
            await self.send_error(exc, keep_alive=keep)
            return keep

    async def _describe(self, parts: list[str], keep: bool) -> bool:
        methods = self.dispatcher.methods
        services = {entry.service.name: entry.service for entry in methods.values()}
        if parts == ["health"]:
            await self.send_json(
                200, {"status": "ok", "services": sorted(services)}, keep_alive=keep
            )
            return keep
        if not parts:
            body = {"services": {name: describe(svc) for name, svc in sorted(services.items())}}
            await self.send_json(200, body, keep_alive=keep)
            return keep
        if len(parts) == 1 and parts[0] in services:
            await self.send_json(200, describe(services[parts[0]]), keep_alive=keep)
            return keep
        raise UnknownMethod(f"no route for GET /{'/'.join(parts)}")

    async def _call(self, request: Message, target: str, keep: bool) -> bool:
        options = self.listener.options
        headers = request.headers
        codec_name = mapping.codec_for(headers.get("content-type"))
        codec = options.codecs.get(codec_name or "")
        if codec is None:
            await self.send_json(
                415,
                mapping.error_body(
                    InvalidRequest(
                        f"content-type {headers.get('content-type')!r} is not supported; "
                        f"use application/json or application/msgpack"
                    )
                ),
                keep_alive=keep,
            )
            return keep
        encoding = headers.get("content-encoding", "identity").strip().lower()
        compression = next(
            (c for c in options.compressions.values() if c.content_encoding == encoding), None
        )
        if compression is None:
            await self.send_json(
                415,
                mapping.error_body(
                    InvalidRequest(
                        f"content-encoding {encoding!r} is not supported; use gzip, zstd or identity"
                    )
                ),
                keep_alive=keep,
            )
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
        answer_codec = (
            options.codecs.get(mapping.codec_for(headers.get("accept", "").split(",")[0]) or "")
            or codec
        )
        answer_compression = mapping.pick_encoding(
            headers.get("accept-encoding"), options.compressions
        )
        corrid = [("x-jesus-corrid", call.meta.corrid)]
        if mode in (ResponseMode.NO_RESPONSE, ResponseMode.ACK):
            if self.listener.closing:
                raise Unavailable("server is shutting down", corrid=call.meta.corrid)
            await self.send_json(202, {"accepted": True, "corrid": call.meta.corrid}, corrid, keep)
            assert self.listener.background is not None
            self.listener.background.spawn(
                call.meta.corrid, self._background, call, deadline=call.deadline, context=target
            )
            return keep
        if mode is ResponseMode.STREAM:
            await self._stream(call, answer_codec, corrid)
            return False if self._eof else keep
        result = await self._watched(call)
        if result is _GONE:
            return False
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
        if answer_compression is not None and len(payload) >= self.limits.compress_threshold:
            payload = answer_compression.compress(payload)
            out.append(("content-encoding", answer_compression.content_encoding))
        out += [("content-length", str(len(payload))), *corrid, ("vary", "accept-encoding")]
        if not keep:
            out.append(("connection", "close"))
        await self.send(response_head(200, out) + payload)
        return keep

    async def _background(self, call: PreparedCall) -> None:
        try:
            await self.dispatcher.run(call)
        except CallError as exc:
            log.warning("%s call failed after it was accepted: %s", call.meta.mode.value, exc)

    async def _watched(self, call: PreparedCall) -> Any:
        """Run the handler; cancel it if the client leaves or the deadline passes."""
        result: Any = _GONE
        error: CallError | None = None
        # Errors are carried out of the task group by hand: raised inside, they would come
        # out wrapped in an exception group.
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_peer, tg.cancel_scope)
            try:
                left = (
                    None
                    if call.deadline is None
                    else max(0.0, call.deadline - anyio.current_time())
                )
                with anyio.fail_after(left):
                    result = await self.dispatcher.run(call)
            except TimeoutError:
                error = self.dispatcher.deadline_exceeded(call)
            except CallError as exc:
                error = exc
            finally:
                tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return result

    async def _watch_peer(self, scope: anyio.CancelScope) -> None:
        """Read ahead while a handler runs (pipelined requests are parsed and kept); when the
        client closes the connection, cancel the handler."""
        try:
            while True:
                await self._receive()
        except PeerGone:
            scope.cancel()
        except httptools.HttpParserError:
            pass  # answered when that request's turn comes

    async def _stream(self, call: PreparedCall, codec: Any, corrid: list[tuple[str, str]]) -> None:
        json_lines = codec.name == "json"
        head = [
            ("content-type", mapping.STREAM_TYPES.get(codec.name, codec.content_type)),
            ("transfer-encoding", "chunked"),
            *corrid,
        ]
        await self.send(response_head(200, head))
        items = self.dispatcher.open_stream(call)

        def frame(obj: Any) -> bytes:
            data: bytes = codec.encode(obj)
            data = data + b"\n" if json_lines else mapping.FRAME_LENGTH.pack(len(data)) + data
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_peer, tg.cancel_scope)  # a client that leaves cancels
            try:
                while True:
                    try:
                        left = (
                            None if call.deadline is None else call.deadline - anyio.current_time()
                        )
                        with anyio.fail_after(left):
                            item = await items.__anext__()
                        chunk = frame({"item": item})
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        await self.send(
                            frame(mapping.error_body(self.dispatcher.deadline_exceeded(call)))
                        )
                        break
                    except ValueError as exc:
                        error = InvalidResponse(str(exc), corrid=call.meta.corrid)
                        await self.send(frame(mapping.error_body(error)))
                        break
                    except CallError as exc:
                        await self.send(frame(mapping.error_body(exc)))
                        break
                    await self.send(chunk)
                await self.send(b"0\r\n\r\n")
            except PeerGone:
                self._eof = True
            finally:
                with anyio.CancelScope(shield=True):
                    await items.aclose()  # type: ignore[attr-defined]
                tg.cancel_scope.cancel()


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
