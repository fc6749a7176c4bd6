"""Services that local processes offer through the daemon (PROTOCOL.md, "Node daemon").

A process whose HELLO carries `provide` gets its services served by the daemon as if they
ran here: listeners on each method's own channels, records and heartbeats in the registry,
the compatibility check at start, and the request and response schemas checked. Each
handler carries the call on to the process over the connection it opened. When that
connection closes, the services are deregistered at once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from typing import Any

import anyio

import jesus
from jesus.errors import ConfigurationError, InvalidRequest, Unavailable
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.plugins import Catalog
from jesus.runtime.context import current_deadline, current_meta
from jesus.security.caller import Caller
from jesus.security.credentials import Credentials
from jesus.transport import OutgoingCall
from jesus.transport.contract import ProvidedConnection, ProviderLink
from jesus.transport.server_events import PROVIDE
from jesus_daemon.declaration import services_of

log = logging.getLogger("jesus.daemon")


@dataclasses.dataclass
class Providers:
    """How the daemon serves what its local processes offer."""

    registry: str | None
    catalog: Catalog
    limits: Limits
    tls: Credentials | None = None
    # Where the daemon listens for the calls it carries to its processes; unnamed schemes
    # get a free local port, one per process.
    bind: Mapping[str, str] | None = None
    compatibility: str | None = "backward"
    on_incompatible: str = "refuse"

    async def provide(self, hello: dict[str, Any], link: ProviderLink, caller: Caller) -> None:
        held = _Held()
        services = services_of(hello.get(PROVIDE), held.forwarder)
        names = ", ".join(s.name for s in services)
        try:
            async with jesus.serve(
                *services,
                registry=self.registry,
                bind=self.bind,
                limits=self.limits,
                tls=self.tls,
                catalog=self.catalog,
                compatibility=self.compatibility,
                on_incompatible=self.on_incompatible,
            ):
                conn = await link.accept()
                held.connection = conn
                held.ready.set()
                log.info("%s provides %s", _who(caller), names)
                await conn.wait_closed()
                log.info("%s is gone: %s deregistered", _who(caller), names)
        except ConfigurationError as exc:  # incompatible schemas, a channel not installed
            raise InvalidRequest(f"cannot serve {names}: {exc}") from None


def _who(caller: Caller) -> str:
    return f"process {caller.pid} (uid {caller.uid})" if caller.pid else "a local process"


class _Held:
    """The process's connection once the daemon accepted it; calls that came sooner (the
    services are registered just before) wait for it."""

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.connection: ProvidedConnection | None = None

    async def _usable(self, target: str) -> ProvidedConnection:
        if self.connection is None:
            await self.ready.wait()
        conn = self.connection
        assert conn is not None
        if not conn.usable:
            raise Unavailable(f"the process that provides {target} is gone")
        return conn

    def forwarder(self, target: str, mode: ResponseMode | None) -> Callable[..., Any]:
        if mode is ResponseMode.STREAM:

            async def items(data: Any) -> AsyncIterator[Any]:
                conn = await self._usable(target)
                call = _outgoing(target, data, ResponseMode.STREAM)
                async with aclosing(conn.open_stream(call)) as stream:  # type: ignore[type-var]
                    async for item in stream:
                        yield item

            return items

        async def forward(data: Any) -> Any:
            conn = await self._usable(target)
            return await conn.request(_outgoing(target, data, mode))

        return forward


def _outgoing(target: str, data: Any, mode: ResponseMode | None) -> OutgoingCall:
    """The call as the process gets it: the caller's meta (corrid, userid, traceparent), in
    `mode` (None: the one it came in), with what is left of its deadline."""
    meta = current_meta.get()
    assert meta is not None  # set by the dispatcher for every handler
    deadline = current_deadline.get()
    left = None if deadline is None else max(0, int((deadline - anyio.current_time()) * 1000))
    mode = mode or meta.mode
    # The daemon opened a sealed call already: the process gets it plain, over its socket.
    meta = dataclasses.replace(meta, mode=mode, deadline_ms=left, seal=None)
    return OutgoingCall("", None, target, data, meta, mode, deadline)
