"""A TransportClient over multiplexed connections, one per (endpoint, channel): the codec
and compression are a connection's, fixed by its HELLO. A transport says how to open one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from jesus.transport.outgoing import OutgoingCall


class PooledConnection(Protocol):
    @property
    def usable(self) -> bool:
        """Open, and not told to go away: new calls may use it."""
        ...

    def request(self, call: OutgoingCall) -> Coroutine[Any, Any, Any]: ...

    def open_stream(self, call: OutgoingCall) -> AsyncIterator[Any]: ...

    async def finish(self) -> None:
        """Hand what was written to the peer (briefly), then close."""
        ...


class ConnectionPool:
    # It ends a stream at its call's deadline itself (jesus.transport.contract), as
    # `Answers.stream` does.
    stream_deadlines = True

    def __init__(self, task_group: TaskGroup) -> None:
        self._tg = task_group
        self._pool: dict[tuple[str, str], PooledConnection] = {}
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    async def connect(self, call: OutgoingCall, task_group: TaskGroup) -> PooledConnection:
        """A new connection for `call`'s endpoint and channel, running in `task_group`."""
        raise NotImplementedError

    async def _get(self, call: OutgoingCall) -> PooledConnection:
        key = (call.endpoint, call.channel.name)
        conn = self._pool.get(key)
        if conn is not None and conn.usable:
            return conn
        async with self._locks.setdefault(key, anyio.Lock()):
            conn = self._pool.get(key)
            if conn is not None and conn.usable:
                return conn
            conn = self._pool[key] = await self.connect(call, self._tg)
            return conn

    def request(self, call: OutgoingCall) -> Coroutine[Any, Any, Any]:
        # The pool look-up inline, and no coroutine of its own around the connection's when
        # it is pooled: this runs once per call.
        conn = self._pool.get((call.endpoint, call.channel.name))
        if conn is None or not conn.usable:
            return self._connect_and_request(call)
        return conn.request(call)

    async def _connect_and_request(self, call: OutgoingCall) -> Any:
        conn = await self._get(call)
        return await conn.request(call)

    def stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        conn = self._pool.get((call.endpoint, call.channel.name))
        if conn is not None and conn.usable:
            return conn.open_stream(call)  # no generator in between, item after item
        return self._connect_and_stream(call)

    async def _connect_and_stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        conn = await self._get(call)
        items = conn.open_stream(call)
        try:
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        pool, self._pool = self._pool, {}
        for conn in pool.values():
            with anyio.move_on_after(1, shield=True):
                await conn.finish()
