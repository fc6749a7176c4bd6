"""The daemon: a unix socket that local processes connect to, and a Client that carries what
they send to the services of the registry."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio

from jesus.errors import ConfigurationError
from jesus.limits import Limits
from jesus.plugins import Catalog, default_catalog
from jesus.registry.open import open_registry
from jesus.registry.resolver import Resolver
from jesus.runtime.client import Client
from jesus.security.credentials import Credentials
from jesus.transport import TransportOptions
from jesus_daemon.health import HealthServer
from jesus_daemon.identity import Identities
from jesus_daemon.local_socket import LocalSocket, open_local_socket
from jesus_daemon.providers import Providers
from jesus_daemon.relay import Relay

DEFAULT_SOCKET = "/run/jesus/jesus.sock"
# Only the daemon's own user may connect, unless the operator opens it to a group.
DEFAULT_SOCKET_MODE = 0o600


def daemon_socket(given: str | None = None) -> str:
    """The daemon's socket: `given`, else $JESUS_DAEMON_SOCKET, else the default."""
    return given or os.environ.get("JESUS_DAEMON_SOCKET") or DEFAULT_SOCKET


@dataclass
class Daemon:
    """A running daemon: where it listens, and the Client it calls with."""

    socket: str
    endpoint: str
    client: Client
    server: LocalSocket
    health: str | None = None  # host:port of the health endpoints, when served


@asynccontextmanager
async def run_daemon(
    socket: str = DEFAULT_SOCKET,
    *,
    registry: str | None = None,
    socket_mode: int = DEFAULT_SOCKET_MODE,
    limits: Limits | None = None,
    tls: Credentials | None = None,
    catalog: Catalog | None = None,
    host: str | None = None,
    advertise: str | None = None,
    compatibility: str | None = "backward",
    on_incompatible: str = "refuse",
    health: str | None = None,
    identities: Identities | None = None,
) -> AsyncIterator[Daemon]:
    """Listen on `socket` until the block ends, then answer the calls in flight and close.

    The services local processes offer are served on the transports of their channels, on
    interface `host` (a free port each; default: this machine only), shown in the registry
    at `advertise` (as for jesus.serve: the host other machines reach, e.g. the node's IP),
    checked for compatibility as serve() does (`compatibility`, `on_incompatible`). With
    `health` (HOST:PORT) the probes of jesus_daemon.health are served there too.

    With `identities`, the peer credentials of a local process say which services it is
    (jesus_daemon.identity): it may offer only those, served with their certificates, and
    its calls go out with its service's certificate."""
    catalog = catalog or default_catalog()
    limits = limits or Limits()
    _make_directory(os.path.dirname(socket) or ".")
    options = TransportOptions(
        limits=limits, codecs=catalog.codecs, compressions=catalog.compressions
    )
    async with contextlib.AsyncExitStack() as stack:
        # Spread over every instance, those on this node first (those it serves itself).
        resolver = Resolver(open_registry(registry, catalog), prefer_host=os.uname().nodename)
        stack.push_async_callback(resolver.backend.aclose)
        client = await stack.enter_async_context(
            Client(
                registry,
                name="jesusd",
                limits=limits,
                catalog=catalog,
                tls=tls,
                resolver=resolver,
            )
        )
        clients = {}  # the Client of each service a local process may be
        for name in sorted(identities.all_names if identities else ()):
            assert identities is not None
            clients[name] = await stack.enter_async_context(
                Client(
                    registry,
                    name=name,
                    limits=limits,
                    catalog=catalog,
                    tls=identities.credentials(name),
                    resolver=client.resolver,
                )
            )
        providers = Providers(
            resolver.backend,
            catalog,
            limits,
            tls,
            host,
            advertise,
            compatibility,
            on_incompatible,
            identities,
        )
        relay = Relay(client, providers, identities, clients)
        server = await open_local_socket(socket, socket_mode, relay, options)
        try:
            probes = None
            if health is not None:
                probes = await HealthServer.listen(health, client.resolver.backend)
            async with anyio.create_task_group() as tg:
                tg.start_soon(server.serve)
                if probes is not None:
                    tg.start_soon(probes.serve)
                address = None if probes is None else probes.address
                yield Daemon(socket, server.endpoint, client, server, address)
                await server.aclose()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await server.aclose()


def _make_directory(path: str) -> None:
    """The socket's directory, made if missing; one that anybody may write to is refused,
    since another user could then replace the socket with their own."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    info = os.stat(path)
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise ConfigurationError(f"{path} is writable by every user: choose another directory")
