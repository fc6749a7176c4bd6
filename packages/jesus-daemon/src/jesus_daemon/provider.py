"""A Python process offering its services through the node daemon, as a process in any
language does (PROTOCOL.md, "Node daemon"): one connection to the daemon's socket, whose
HELLO declares the services, and over which the daemon's calls come in."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import TaskStatus

from jesus.errors import CallError, ConfigurationError, Unavailable
from jesus.limits import Limits
from jesus.plugins import Catalog, default_catalog
from jesus.runtime.dispatcher import ANY_TRANSPORT, CallDispatcher
from jesus.runtime.service import Service
from jesus.transport import TransportOptions
from jesus.transport.peer import peer_of
from jesus.transport.runner import CallRunner
from jesus.transport.server_events import PROVIDE
from jesus.validation.cache import ValidatorCache
from jesus_daemon.daemon import daemon_socket
from jesus_daemon.declaration import declaration_of
from jesus_tcp.server import ServerConnection

log = logging.getLogger("jesus.daemon.provider")
# Between attempts to reach a daemon that is gone (it restarts): doubling up to the last.
RETRY_FIRST, RETRY_MAX = 0.05, 2.0


@asynccontextmanager
async def provide(
    *services: Service,
    socket: str | None = None,
    codec: str = "msgpack",
    limits: Limits | None = None,
    catalog: Catalog | None = None,
    drain_timeout: float = 10.0,
) -> AsyncIterator[None]:
    """Offer `services` through the daemon listening on `socket` (default:
    $JESUS_DAEMON_SOCKET, else /run/jesus/jesus.sock) until the block exits.

    The daemon registers them, serves them on their channels and hands their calls to this
    process; they are checked here as well. Entering raises the daemon's refusal (e.g.
    INVALID_REQUEST for incompatible schemas) or UNAVAILABLE when no daemon listens. Should
    the daemon go away later, this process reconnects and offers them again by itself."""
    if not services:
        raise ConfigurationError("provide() needs at least one service")
    catalog = catalog or default_catalog()
    limits = limits or Limits()
    if codec not in catalog.codecs:
        raise ConfigurationError(f"codec {codec!r} is not installed")
    dispatcher = CallDispatcher(
        services,
        ValidatorCache(catalog.validators),
        catalog.middleware,
        None,
        catalog.codecs,
        limits,
    )
    runner = CallRunner(dispatcher.served_over(ANY_TRANSPORT), limits)
    offering = _Offering(
        daemon_socket(socket),
        runner,
        TransportOptions(limits=limits, codecs=catalog.codecs, compressions=catalog.compressions),
        {PROVIDE: [declaration_of(s) for s in services]},
        catalog.codecs[codec],
        catalog.compressions["none"],
    )
    refusal: CallError | None = None
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        try:
            await tg.start(offering.run)
        except CallError as exc:  # raised as itself, not in the task group's ExceptionGroup
            refusal = exc
        else:
            try:
                yield
            finally:
                with anyio.move_on_after(drain_timeout, shield=True):
                    await runner.drain()
        tg.cancel_scope.cancel()
    if refusal is not None:
        raise refusal


class _Offering:
    """The connection to the daemon, made again whenever it is lost."""

    def __init__(
        self,
        socket: str,
        runner: CallRunner,
        options: TransportOptions,
        offer: dict[str, Any],
        codec: Any,
        compression: Any,
    ) -> None:
        self.socket = socket
        self.runner = runner
        self.options = options
        self.offer = offer
        self.codec = codec
        self.compression = compression

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        started = False
        delay = RETRY_FIRST

        def opened() -> None:
            nonlocal started, delay
            delay = RETRY_FIRST
            if not started:
                started = True
                task_status.started()
            else:
                log.info("offered again through the daemon at %s", self.socket)

        while True:
            try:
                stream = await anyio.connect_unix(self.socket)
            except OSError as exc:
                if not started:
                    raise Unavailable(f"no daemon listens on {self.socket}: {exc}") from None
            else:
                conn = ServerConnection(
                    stream, self.runner.session(peer_of(stream)), self.options, self.offer, opened
                )
                conn.proto.codec, conn.proto.compression = self.codec, self.compression
                await conn.run()
                if not started:
                    raise conn.refusal or Unavailable(
                        f"the daemon at {self.socket} closed the connection unanswered"
                    )
                log.warning(
                    "lost the daemon at %s (%s), reconnecting",
                    self.socket,
                    conn.refusal or "connection closed",
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
