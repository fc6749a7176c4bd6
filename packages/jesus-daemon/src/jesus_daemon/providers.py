"""Services that local processes offer through the daemon (PROTOCOL.md, "Node daemon").

A process whose HELLO carries `provide` gets its services served by the daemon as if they
ran here: listeners on each method's own channels, records and heartbeats in the registry,
the compatibility check at start, and the request and response schemas checked. Each
handler carries the call on to the process over the connection it opened. When that
connection closes, the services are deregistered at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import anyio

import jesus
from jesus.errors import ConfigurationError, InvalidRequest, Unavailable
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.plugins import Catalog
from jesus.registry.base import RegistryBackend
from jesus.runtime.context import current_deadline, current_meta
from jesus.runtime.service import Service
from jesus.security.caller import Caller
from jesus.security.credentials import Credentials
from jesus.transport import OutgoingCall
from jesus.transport.contract import ProvidedConnection, ProviderLink
from jesus.transport.server_events import PROVIDE
from jesus_daemon.declaration import services_of
from jesus_daemon.identity import Identities, describe

log = logging.getLogger("jesus.daemon")


@dataclasses.dataclass
class Providers:
    """How the daemon serves what its local processes offer."""

    # One backend for every process it serves: one set of registry connections per node.
    registry: RegistryBackend
    catalog: Catalog
    limits: Limits
    tls: Credentials | None = None
    # The interface the daemon listens on for the calls it carries to its processes (a free
    # port per process and transport; default: this machine only), and the host the
    # registry shows for them (e.g. the node's IP when `host` is 0.0.0.0).
    host: str | None = None
    advertise: str | None = None
    compatibility: str | None = "backward"
    on_incompatible: str = "refuse"
    identities: Identities | None = None

    async def provide(self, hello: dict[str, Any], link: ProviderLink, caller: Caller) -> None:
        held = _Held()
        services = services_of(hello.get(PROVIDE), held.forwarder)
        names = ", ".join(s.name for s in services)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for group, tls in self._served_as(services, caller):
                    await stack.enter_async_context(
                        jesus.serve(
                            *group,
                            registry=self.registry,
                            bind=self._bind(group),
                            advertise=self.advertise,
                            limits=self.limits,
                            tls=tls,
                            catalog=self.catalog,
                            compatibility=self.compatibility,
                            on_incompatible=self.on_incompatible,
                        )
                    )
                conn = await link.accept()
                held.connection = conn
                held.ready.set()
                log.info("%s provides %s", describe(caller), names)
                await conn.wait_closed()
                log.info("%s is gone: deregistering %s", describe(caller), names)
        except ConfigurationError as exc:  # incompatible schemas, a channel not installed
            raise InvalidRequest(f"cannot serve {names}: {exc}") from None

    def _served_as(
        self, services: list[Service], caller: Caller
    ) -> list[tuple[list[Service], Credentials | None]]:
        """The services, each with the certificate it is served with: with identities, its
        own (and only a process that is that service may offer it); else the daemon's."""
        if self.identities is None:
            return [(services, self.tls)]
        for service in services:
            self.identities.check_offer(caller, service.name)
        return [([s], self.identities.credentials(s.name)) for s in services]

    def _bind(self, services: list[Service]) -> dict[str, str] | None:
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        schemes = {scheme for service in services for scheme in service.schemes}
        return {scheme: f"{host}:0" for scheme in schemes if scheme != "unix"}


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
