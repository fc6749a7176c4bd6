"""Calls and emits through the node daemon, as a process in any language makes them: one
unix connection, no registry, schemas or channels of its own. The daemon resolves the
service, checks the request and the answer, and carries each call on over its own channel."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, aclosing
from typing import Any

import anyio

from jesus import event_names
from jesus.channel import resolve_channel
from jesus.errors import ConfigurationError
from jesus.limits import Limits
from jesus.messages import Meta, ResponseMode
from jesus.plugins import Catalog, default_catalog
from jesus.runtime.context import current_meta, remaining_seconds
from jesus.transport import OutgoingCall, TransportClient, TransportOptions
from jesus_daemon.daemon import daemon_socket
from jesus_tcp.addresses import Address


class DaemonClient:
    """`async with DaemonClient() as client:` (the socket: $JESUS_DAEMON_SOCKET, else
    /run/jesus/jesus.sock) then `call`, `notify`,
    `stream` and `emit` as with jesus.Client. Inside a handler, calls carry its corrid and
    what is left of its deadline."""

    def __init__(
        self,
        socket: str | None = None,
        *,
        name: str | None = None,
        codec: str = "msgpack",
        timeout: float | None = 30.0,
        limits: Limits | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self.catalog = catalog or default_catalog()
        self.name = name
        self.timeout = timeout
        self._channel = resolve_channel(f"unix+{codec}", self.catalog)
        self._endpoint = Address("unix", path=daemon_socket(socket)).endpoint()
        self._options = TransportOptions(
            limits=limits or Limits(),
            codecs=self.catalog.codecs,
            compressions=self.catalog.compressions,
        )
        self._stack = AsyncExitStack()
        self._transport: TransportClient | None = None

    async def __aenter__(self) -> DaemonClient:
        tg = await self._stack.enter_async_context(anyio.create_task_group())
        self._transport = self._channel.transport.client(self._options, tg)
        self._stack.push_async_callback(self._transport.aclose)
        self._stack.callback(tg.cancel_scope.cancel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._transport = None
        await self._stack.aclose()

    async def call(
        self,
        target: str,
        data: Any = None,
        *,
        mode: ResponseMode | str = ResponseMode.RESPONSE,
        timeout: float | None = None,
        userid: str | None = None,
    ) -> Any:
        """The result for `requestResponse`, None once the service accepted it for `ack`,
        None at once for `noResponse`."""
        rmode = ResponseMode(mode)
        if rmode is ResponseMode.STREAM:
            raise ConfigurationError("use stream() for a stream method")
        return await self._client().request(self._outgoing(target, data, rmode, timeout, userid))

    async def notify(self, target: str, data: Any = None, **kwargs: Any) -> None:
        await self.call(target, data, mode=ResponseMode.NO_RESPONSE, **kwargs)

    async def stream(
        self,
        target: str,
        data: Any = None,
        *,
        timeout: float | None = None,
        userid: str | None = None,
    ) -> AsyncIterator[Any]:
        """A stream method's items, under the connection's credit; breaking out cancels it."""
        call = self._outgoing(target, data, ResponseMode.STREAM, timeout, userid)
        async with aclosing(self._client().stream(call)) as items:  # type: ignore[type-var]
            async for item in items:
                yield item

    async def emit(
        self,
        event: str,
        data: Any = None,
        *,
        mode: ResponseMode | str = ResponseMode.NO_RESPONSE,
        timeout: float | None = None,
        userid: str | None = None,
    ) -> None:
        """Emit `event` to every listener group; in `ack` mode, once every group took it."""
        if not event_names.valid_event(event):
            raise ConfigurationError(f"event name {event!r} is not valid")
        target = event_names.listener_method(event)
        await self.call(target, data, mode=mode, timeout=timeout, userid=userid)

    def _client(self) -> TransportClient:
        if self._transport is None:
            raise ConfigurationError("use the DaemonClient in `async with`")
        return self._transport

    def _outgoing(
        self,
        target: str,
        data: Any,
        mode: ResponseMode,
        timeout: float | None,
        userid: str | None,
    ) -> OutgoingCall:
        seconds = remaining_seconds(timeout if timeout is not None else self.timeout)
        parent = current_meta.get()
        meta = Meta(
            mode=mode,
            sender=self.name,
            userid=userid or (parent.userid if parent else None),
            req_out_ts=time.time(),
            deadline_ms=None if seconds is None else max(0, int(seconds * 1000)),
        )
        if parent is not None:
            meta.corrid, meta.traceparent = parent.corrid, parent.traceparent
        deadline = None if seconds is None else anyio.current_time() + seconds
        return OutgoingCall(self._endpoint, self._channel, target, data, meta, mode, deadline)
