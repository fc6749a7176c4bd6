"""The servers and clients compared by `rpc.py`: jesus, grpc.aio and a raw asyncio protocol.

Every stack serves the same call: a three-field object in, a three-field object out, msgpack
on the wire. Only jesus validates (both ends, request and response), as it does by default.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack

REQUEST = {"id": 7, "name": "widget", "tags": ["a", "b"]}
REQUEST_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id", "name", "tags"],
}
RESPONSE_SCHEMA = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "ok": {"type": "boolean"}, "n": {"type": "integer"}},
    "required": ["id", "ok", "n"],
}


def answer(request: dict[str, Any]) -> dict[str, Any]:
    return {"id": request["id"], "ok": True, "n": len(request["tags"])}


Call = Callable[[], Awaitable[Any]]

# ------------------------------------------------------------------ raw asyncio protocol

_LEN = struct.Struct("!I")


class _RawServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        out = []
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < length:
                break
            call_id, request = msgpack.unpackb(buf[offset + 4 : offset + 4 + length])
            body = msgpack.packb([call_id, answer(request)])
            out.append(_LEN.pack(len(body)) + body)
            offset += 4 + length
        del buf[:offset]
        if out:
            self.transport.write(b"".join(out))


async def raw_server(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_RawServerProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


class _RawClientProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiting: dict[int, asyncio.Future[Any]] = {}

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < length:
                break
            call_id, response = msgpack.unpackb(buf[offset + 4 : offset + 4 + length])
            offset += 4 + length
            self.waiting.pop(call_id).set_result(response)
        del buf[:offset]


async def raw_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_RawClientProtocol, "127.0.0.1", port)
    counter = iter(range(1, 1 << 62))

    async def call() -> Any:
        call_id = next(counter)
        fut = loop.create_future()
        proto.waiting[call_id] = fut
        body = msgpack.packb([call_id, REQUEST])
        transport.write(_LEN.pack(len(body)) + body)
        return await fut

    async def close() -> None:
        transport.close()

    return call, close


# ------------------------------------------------------------------ the floor: raw, doing jesus's unskippable work
#
# The raw protocol above, plus what every validated jesus call must do whatever its code:
# an envelope (method, meta with corrid and deadline, data), both schemas checked at both
# ends with jsonschema-rs, and on the server an async handler in a task of its own (a
# handler may await and be cancelled at its deadline; Python 3.11 has no eager tasks). No
# registry, limits, sessions, meters or cancellation: what jesus costs beyond this row is
# what those cost.


def _validators() -> tuple[Any, Any]:
    import jsonschema_rs

    return jsonschema_rs.validator_for(REQUEST_SCHEMA), jsonschema_rs.validator_for(RESPONSE_SCHEMA)


class _FloorServerProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = bytearray()
        self.out: list[bytes] = []
        self.request_check, self.response_check = _validators()
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < length:
                break
            call_id, method, meta, request = msgpack.unpackb(buf[offset + 4 : offset + 4 + length])
            offset += 4 + length
            if method != "bench.call" or not self.request_check.is_valid(request):
                self._send([call_id, {"code": "INVALID_REQUEST"}, None])
                continue
            deadline = self.loop.time() + meta["deadline_ms"] / 1000
            self.loop.create_task(self._run(call_id, meta["corrid"], deadline, request))
        del buf[:offset]

    async def _run(self, call_id: int, corrid: str, deadline: float, request: Any) -> None:
        result = await _handler(request)
        if self.loop.time() > deadline or not self.response_check.is_valid(result):
            self._send([call_id, {"code": "INVALID_RESPONSE", "corrid": corrid}, None])
        else:
            self._send([call_id, None, result])

    def _send(self, message: Any) -> None:
        # One write per loop turn for every answer of that turn.
        if not self.out:
            self.loop.call_soon(self._flush)
        body = msgpack.packb(message)
        self.out.append(_LEN.pack(len(body)) + body)

    def _flush(self) -> None:
        out, self.out = self.out, []
        self.transport.write(b"".join(out))


async def _handler(request: dict[str, Any]) -> dict[str, Any]:
    return answer(request)


async def floor_server(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_FloorServerProtocol, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


class _FloorClientProtocol(_RawClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.request_check, self.response_check = _validators()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = _LEN.unpack_from(buf, offset)
            if len(buf) - offset - 4 < length:
                break
            call_id, error, response = msgpack.unpackb(buf[offset + 4 : offset + 4 + length])
            offset += 4 + length
            future = self.waiting.pop(call_id)
            if error is None and self.response_check.is_valid(response):
                future.set_result(response)
            else:
                future.set_exception(RuntimeError(error or "invalid response"))
        del buf[:offset]


async def floor_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import os

    prefix = os.urandom(8).hex()  # a corrid unique per call: random prefix, counter
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(_FloorClientProtocol, "127.0.0.1", port)
    counter = iter(range(1, 1 << 62))

    async def call() -> Any:
        if not proto.request_check.is_valid(REQUEST):
            raise ValueError("invalid request")
        call_id = next(counter)
        meta = {"corrid": f"{prefix}{call_id:x}", "deadline_ms": 30_000}
        fut = loop.create_future()
        proto.waiting[call_id] = fut
        body = msgpack.packb([call_id, "bench.call", meta, REQUEST])
        transport.write(_LEN.pack(len(body)) + body)
        return await fut

    async def close() -> None:
        transport.close()

    return call, close


# ------------------------------------------------------------------ grpc.aio


async def grpc_server(port: int) -> None:
    import grpc

    async def handle(request: Any, context: Any) -> Any:
        return answer(request)

    handler = grpc.method_handlers_generic_handler(
        "bench.Bench",
        {
            "Call": grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=msgpack.unpackb,
                response_serializer=msgpack.packb,
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def grpc_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    await channel.channel_ready()
    stub = channel.unary_unary(
        "/bench.Bench/Call", request_serializer=msgpack.packb, response_deserializer=msgpack.unpackb
    )

    async def call() -> Any:
        return await stub(REQUEST)

    async def close() -> None:
        await channel.close()

    return call, close


# ------------------------------------------------------------------ jesus


def jesus_service(name: str = "bench") -> Any:
    import jesus

    svc = jesus.Service(name, channel="tcp+msgpack")

    @svc.method(request=REQUEST_SCHEMA, response=RESPONSE_SCHEMA)
    async def call(data: dict[str, Any]) -> dict[str, Any]:
        return answer(data)

    @svc.method()  # no schema: nothing to check
    async def call_unchecked(data: dict[str, Any]) -> dict[str, Any]:
        return answer(data)

    @svc.method(request=REQUEST_SCHEMA, response=RESPONSE_SCHEMA, channel="http+json")
    async def call_http(data: dict[str, Any]) -> dict[str, Any]:
        return answer(data)

    return svc


async def jesus_server(registry: str, bind: str, name: str = "bench") -> None:
    import anyio

    import jesus

    async with jesus.serve(jesus_service(name), registry=registry, bind={"tcp": bind}):
        await anyio.sleep_forever()


# ------------------------------------------------------------------ aiohttp


async def aiohttp_server(port: int) -> None:
    from aiohttp import web

    async def handle(request: Any) -> Any:
        return web.json_response(answer(await request.json()))

    app = web.Application()
    app.router.add_post("/bench/call", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


async def aiohttp_client(port: int) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    url = f"http://127.0.0.1:{port}/bench/call"

    async def call() -> Any:
        async with session.post(url, json=REQUEST) as response:
            return await response.json()

    return call, session.close
