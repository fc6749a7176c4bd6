"""Running services: listen on every transport their channels need, register each instance,
keep it alive with heartbeats, and on the way out deregister and drain in-flight calls."""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskStatus

from jesus.channel import missing, resolve_channel
from jesus.compat.check import MODES, check_start
from jesus.config import Config
from jesus.errors import (
    ConfigurationError,
    IncompatibleSchemas,
    JesusError,
    RegistryError,
    RegistryLimit,
)
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.plugins import Catalog, default_catalog
from jesus.registry import lookups
from jesus.registry.base import InstanceRecord, RegistryBackend
from jesus.registry.open import open_registry
from jesus.registry.resolver import Resolver, bounded
from jesus.runtime.client import Client
from jesus.runtime.dispatcher import CallDispatcher
from jesus.runtime.files import make_room_for
from jesus.runtime.metrics import open_metrics
from jesus.runtime.service import Service
from jesus.sealing.envelope import CODECS as SEALED_CODECS
from jesus.sealing.seal import Opener
from jesus.security.credentials import Credentials
from jesus.transport import Server, TransportOptions
from jesus.transport.advertise import advertised
from jesus.transport.keys import TransportKeys
from jesus.validation.cache import ValidatorCache

log = logging.getLogger("jesus.node")
# How often a node looks whether the registry still has its records (between heartbeats), and
# retries while the registry fails.
CHECK_EVERY = 1.0


@dataclass
class Node:
    """Running services. `endpoints` maps each transport scheme to where it listens, and
    `servers` to the transport's bound server (for its counters, e.g. refused datagrams)."""

    services: list[Service]
    endpoints: dict[str, str]
    client: Client
    records: list[InstanceRecord] = field(default_factory=list)
    servers: dict[str, Server] = field(default_factory=dict)
    opener: Opener | None = None  # the sealing keys, when something here is sealed
    _register: Callable[[InstanceRecord], Awaitable[None]] | None = None
    # The TLS contexts serve() made from `tls` (server, client): reload_credentials renews them.
    _contexts: tuple[Any, Any] = (None, None)
    metrics: str | None = None  # the Prometheus endpoint's URL, with serve(metrics=...)

    async def reload_credentials(self, credentials: Credentials) -> None:
        """Take renewed certificates without a restart: new TLS handshakes (both ways) show
        the new certificate, the node's own calls seal with it, and, when something here is
        sealed, new sealing keys signed by it are published. Connections already open and
        callers still sealing to the previous key carry on."""
        credentials.reload_into(*self._contexts)
        self.client.use_sealing(credentials)
        if self.opener is not None:
            self.opener.reload(credentials)
            await self.rotate_seal_keys()

    async def rotate_seal_keys(self) -> None:
        """Replace the sealing keys now and publish the new one. Callers still sealing to
        the previous key (until their registry cache refreshes) are served for its grace."""
        if self.opener is None or self._register is None:
            raise ConfigurationError("nothing served here is sealed")
        self.opener.ring.rotate()
        for i, record in enumerate(self.records):
            published = self.opener.ring.published(record.service)
            self.records[i] = dataclasses.replace(record, seal=published)
            await self._register(self.records[i])


@asynccontextmanager
async def serve(
    *services: Service,
    registry: str | RegistryBackend | None = None,
    bind: Mapping[str, str] | None = None,
    limits: Limits | None = None,
    ssl_context: Any = None,
    client_ssl_context: Any = None,
    ttl: float = 10.0,
    drain_timeout: float = 10.0,
    compatibility: str | None = "backward",
    on_incompatible: str = "refuse",
    catalog: Catalog | None = None,
    allow_plaintext: Iterable[str] = (),
    tls: Credentials | None = None,
    sealing: Credentials | None = None,
    seal_key_lifetime: float = 3600.0,
    advertise: str | None = None,
    config: Config | str | os.PathLike[str] | None = None,
    metrics: str | None = None,
) -> AsyncIterator[Node]:
    """Serve `services` until the block exits.

    `bind` maps a scheme to its address (`{"tcp": "127.0.0.1:4000", "unix": "/run/x.sock"}`);
    unnamed schemes get a free local address. `tls` (jesus.Credentials: CA, certificate,
    key) turns on TLS for both ends: listeners show the certificate and, given a CA, require
    client certificates it signed (mutual TLS); the services' own calls show it too. Or give
    the contexts: `ssl_context` for the listeners, `client_ssl_context` for outgoing calls.

    A method or listener is served only over the transports of its channels. Given TLS,
    every one of them must be protected (TLS, or a unix socket: file permissions and peer
    credentials), unless its transport is named in `allow_plaintext` (e.g. `["udp"]`):
    serve() refuses to start, naming each unprotected method and channel. A sealed method or listener is protected on
    any transport; its node makes sealing keys (published in its records, signed by the
    certificate of `sealing`, which defaults to `tls`) and replaces them every
    `seal_key_lifetime` seconds. When those credentials hold a certificate, its key and a
    CA, a keyed transport (`zmq`: CURVE) is protected too, and refuses peers without a
    certificate the CA signed (jesus.transport.keys).

    `advertise` is the host the registry shows for them (default $JESUS_ADVERTISE_HOST),
    where listeners bound to every interface (`{"tcp": "0.0.0.0:4000"}`, in a container)
    are reached from other machines, e.g. the pod's IP.

    `registry` is a registry URL (default: JESUS_REGISTRY, else the embedded registry), or a
    backend to share, which serve() does not close: a process that serves many sets of
    services (the node daemon) then holds one set of registry connections for all of them.

    `metrics` ("HOST:PORT") serves Prometheus metrics at http://HOST:PORT/metrics while the
    services run (`node.metrics` is the URL); it needs jesus-otel ("jesus-core[prometheus]").

    Before registering, the services are checked against what runs (jesus.compat.check):
    `compatibility` is the rule for a new version of a running service ("backward", the
    default, keeps old callers working; "forward"; "full"; None skips every check), and
    `on_incompatible` "refuse" raises IncompatibleSchemas, "warn" logs the report.

    `config` (jesus.Config, or the path of a TOML file) sets the channel of any method or
    listener, the limits and the registry without a change to the code; the environment's
    settings (JESUS_CONFIG, JESUS_CHANNEL__SERVICE__METHOD, ...) apply over a file, and alone
    when no config is given (docs/configuration.md). Arguments given here win over both.
    The configured channels are set on the services' declarations.
    """
    if compatibility is not None and compatibility not in MODES:
        raise ConfigurationError(f"compatibility must be one of {MODES} or None")
    if on_incompatible not in ("refuse", "warn"):
        raise ConfigurationError("on_incompatible must be 'refuse' or 'warn'")
    if not services:
        raise ConfigurationError("serve() needs at least one service")
    made_server = made_client = None  # the contexts made here, which reload_credentials renews
    if tls is not None:
        if ssl_context is None:
            ssl_context = made_server = tls.server_context()
        if client_ssl_context is None:
            client_ssl_context = made_client = tls.client_context()
    catalog = catalog or default_catalog()
    settings = config if isinstance(config, Config) else Config.load(config)
    configured = settings.apply(services)
    for line in configured:
        log.info("configured: %s", line)
    shared: RegistryBackend | None = None  # a backend given to share: not closed here
    if registry is None or isinstance(registry, str):
        url = settings.registry_for(registry)
    else:
        shared, url = registry, None
    limits = limits or settings.limits_over()
    advertise = advertise or os.environ.get("JESUS_ADVERTISE_HOST") or None
    keys = TransportKeys.of(sealing or tls)
    try:
        schemes, sealed = _check_declarations(
            services,
            catalog,
            protect=ssl_context is not None,
            plaintext=set(allow_plaintext),
            keyed=keys is not None,
        )
    except ConfigurationError as exc:
        if not configured:
            raise
        raise type(exc)(f"{exc} [configured: {'; '.join(configured)}]") from exc
    for scheme in bind or {}:
        if scheme not in catalog.transports:
            raise missing("transport", scheme, catalog.transports)
        schemes.add(scheme)

    sealing = sealing or tls
    opener = None
    if sealed:
        if sealing is None:
            raise ConfigurationError(
                "sealed methods or listeners need the service's credentials: "
                "serve(..., tls=jesus.Credentials.load(ca, certificate, key)), or sealing= "
                "to seal without TLS"
            )
        opener = Opener(sealing, limits.max_seal_grants, limits.seal_window, seal_key_lifetime)
    backend = shared or open_registry(url, catalog)
    validators = ValidatorCache(catalog.validators)
    dispatcher = CallDispatcher(
        services, validators, catalog.middleware, opener, catalog.codecs, limits
    )
    options = TransportOptions(
        limits=limits,
        ssl_context=ssl_context,
        codecs=catalog.codecs,
        compressions=catalog.compressions,
        keys=keys,
    )
    resolver = Resolver(backend)
    client = Client(
        name=services[0].name,
        limits=limits,
        ssl_context=client_ssl_context,
        catalog=catalog,
        resolver=resolver,
        tls=tls,
        sealing=sealing,
    )
    servers: list[Server] = []
    metrics_server = None
    try:
        if metrics is not None:
            metrics_server = await open_metrics(metrics, services[0].name, catalog)
        for scheme in sorted(schemes):
            transport = catalog.transports[scheme]
            handler = dispatcher.served_over(scheme)
            address = (bind or {}).get(scheme)
            try:
                servers.append(await transport.listen(handler, address, options))
            except Exception as exc:
                refusal = _cannot_listen(scheme, address, exc)
                if refusal is None:
                    raise
                raise refusal from exc
        make_room_for(limits.max_connections * len(servers))
        endpoints = {
            scheme: advertised(server.endpoint, advertise)
            for scheme, server in zip(sorted(schemes), servers, strict=True)
        }
        records = [_record(service, endpoints, opener) for service in services]

        async def register(record: InstanceRecord, at_start: bool = False) -> None:
            try:
                await bounded(resolver.timeout, "register", backend.register, record, ttl)
            except RegistryLimit:
                if at_start:  # it would run unseen: refuse to start, naming the limit
                    raise
                log.error("could not register %s", record.service, exc_info=True)
            except RegistryError as exc:  # the heartbeat keeps trying
                log.warning("could not register %s yet: %s", record.service, exc)

        node = Node(
            list(services),
            endpoints,
            client,
            records,
            dict(zip(sorted(schemes), servers, strict=True)),
            opener,
            register,
            (made_server, made_client),
        )
        node.metrics = None if metrics_server is None else metrics_server.url
        for service in services:
            service.client = client
            if service.uses:  # its calls go only to instances that fit what it declared
                client.declare_uses(service.name, service.uses)
        if compatibility is not None:
            await _check_compatibility(
                backend, records, compatibility, on_incompatible, resolver.timeout
            )
        for record in records:  # the listeners hold what arrives meanwhile
            await register(record, at_start=True)
        async with client, anyio.create_task_group() as tg:
            for server in servers:
                tg.start_soon(server.serve)
            if opener is not None:
                tg.start_soon(_rotate_keys, node)
            stop_heartbeat = await tg.start(_heartbeat, backend, records, ttl, resolver.timeout)
            log.info(
                "serving %s on %s",
                ", ".join(s.name for s in services),
                ", ".join(endpoints.values()),
            )
            try:
                yield node
            finally:
                with anyio.CancelScope(shield=True):
                    await stop_heartbeat()  # first: it would register them again
                    for record in records:
                        try:
                            await bounded(
                                resolver.timeout,
                                "deregister",
                                backend.deregister,
                                record.service,
                                record.instance_id,
                            )
                        except RegistryError as exc:
                            log.warning("could not deregister %s: %s", record.service, exc)
                    with anyio.move_on_after(drain_timeout):
                        for server in servers:
                            await server.aclose()
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for server in servers:
                await server.aclose()
            if metrics_server is not None:
                await metrics_server.aclose()
            for service in services:
                service.client = None
            await client.aclose()
            if shared is None:
                await backend.aclose()


def _check_declarations(
    services: tuple[Service, ...],
    catalog: Catalog,
    protect: bool,
    plaintext: set[str],
    keyed: bool = False,
) -> tuple[set[str], bool]:
    """The transports the services' channels need, and whether anything is sealed. Raises
    ConfigurationError, naming what to change: a channel not installed, a mode its transport
    cannot carry, a sealed codec sealing does not carry, or (`protect`: TLS was given) a
    method or listener that would be served unprotected (`keyed`: the node has keys, which
    protect a keyed transport)."""
    schemes: set[str] = set()
    unprotected: list[str] = []
    sealed = False
    for service in services:
        uses: list[tuple[Any, ResponseMode | None, str, str | None]]
        uses = [
            (spec, m.mode, f"{service.name}.{m.name}", m.seal)
            for m in service.methods.values()
            for spec in m.channels
        ]
        uses += [
            (spec, None, f"{service.name} listener of {sub.event}", sub.seal)
            for sub in service.listeners.values()
            for spec in sub.channels
        ]
        for spec, mode, what, seal in uses:
            channel = resolve_channel(spec, catalog)  # fail now, naming the extra to install
            if mode is not None and mode not in channel.transport.modes:
                able = sorted(s for s, t in catalog.transports.items() if mode in t.modes)
                raise ConfigurationError(
                    f"{what} is declared {mode.value!r} over {spec}, which {spec.transport} "
                    f"cannot carry; channels that can: {', '.join(able) or 'none installed'}"
                )
            if seal is not None and spec.codec not in SEALED_CODECS:
                raise ConfigurationError(
                    f"{what} is sealed over {spec}: sealing carries "
                    f"{' and '.join(SEALED_CODECS)} data, not {spec.codec}"
                )
            transport = channel.transport
            protected = (
                transport.tls
                or transport.local
                or seal is not None
                or (keyed and getattr(transport, "keyed", False))
            )
            sealed |= seal is not None
            if protect and not protected and spec.transport not in plaintext:
                unprotected.append(f"{what} on {spec.transport}")
            schemes.add(spec.transport)
    if unprotected:
        raise ConfigurationError(
            "TLS was given, but these would be served unprotected (their transport carries "
            "no TLS): " + "; ".join(unprotected) + ". Serve them over a protected channel, "
            "or name their transports in allow_plaintext to serve them so anyway"
        )
    return schemes, sealed


def _cannot_listen(scheme: str, address: str | None, exc: Exception) -> Exception | None:
    """What a transport's refusal to listen means, naming where: an OS error (address in
    use, no permission, no such directory) becomes a ConfigurationError; None for others."""
    code = getattr(exc, "errno", None)  # OSError, and libraries' own (zmq.ZMQError)
    if isinstance(exc, JesusError) or not isinstance(code, int):
        return None
    where = address or "a free local address"
    why = getattr(exc, "strerror", None) or str(exc)
    hint = ""
    if code == errno.EADDRINUSE:
        hint = f" (another process listens there: stop it, or bind {scheme} elsewhere)"
    elif code in (errno.EACCES, errno.EPERM):
        hint = " (a port below 1024 needs privileges; a socket file, a writable directory)"
    return ConfigurationError(f"{scheme} cannot listen on {where}: {why}{hint}")


def _record(service: Service, endpoints: dict[str, str], opener: Opener | None) -> InstanceRecord:
    return InstanceRecord(
        service=service.name,
        version=service.version,
        instance_id=uuid.uuid4().hex[:12],
        endpoints={s: endpoints[s] for s in sorted(service.schemes) if s in endpoints},
        methods={name: spec.record() for name, spec in service.methods.items()},
        listens={event: spec.record() for event, spec in service.listeners.items()},
        emits={event: spec.record() for event, spec in service.emits.items()},
        uses=dict(service.uses),
        host=os.uname().nodename,
        pid=os.getpid(),
        started_at=time.time(),
        seal={} if opener is None else opener.ring.published(service.name),
    )


async def _rotate_keys(node: Node) -> None:
    """Rotate the sealing keys when the current one has served its lifetime."""
    assert node.opener is not None
    ring = node.opener.ring
    while True:
        await anyio.sleep(max(1.0, min(60.0, ring.lifetime / 4)))
        if ring.due():
            await node.rotate_seal_keys()
            log.info("sealing keys rotated")


async def _check_compatibility(
    backend: Any, records: list[InstanceRecord], mode: str, on_incompatible: str, timeout: float
) -> None:
    try:
        live = await bounded(timeout, "listing", lookups.related, backend, records)
    except RegistryError as exc:
        log.warning("compatibility not checked, the registry is unavailable: %s", exc)
        return
    report = check_start(records, live, mode)
    for finding in report.findings:
        if finding.kind != "incompatible":
            log.warning("compatibility: %s", finding)
    if report.ok:
        return
    if on_incompatible == "refuse":
        raise IncompatibleSchemas(report)
    log.warning("starting despite incompatibilities:\n%s", report.text())


async def _heartbeat(
    backend: Any,
    records: list[InstanceRecord],
    ttl: float,
    timeout: float,
    *,
    task_status: TaskStatus[Callable[[], Awaitable[None]]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Keep `records` registered; started with `tg.start`, it hands back `stop()`, which
    returns once no registration is under way any more."""
    scope = anyio.CancelScope()
    stopped = anyio.Event()

    async def stop() -> None:
        scope.cancel()
        await stopped.wait()

    try:
        with scope:
            task_status.started(stop)
            await _beat(backend, records, ttl, timeout)
    finally:
        stopped.set()


async def _beat(backend: Any, records: list[InstanceRecord], ttl: float, timeout: float) -> None:
    """Renew every record each TTL/3. In between, every CHECK_EVERY seconds, look whether
    the registry still has them (it may have restarted empty) and register at once those it
    lost; while the registry fails, retry every CHECK_EVERY seconds."""
    check = min(CHECK_EVERY, ttl / 3)
    renewed = anyio.current_time()
    failing = False
    while True:
        await anyio.sleep(check)
        due = failing or anyio.current_time() - renewed >= ttl / 3
        try:
            lost = records if due else await _lost(backend, records, timeout)
            for record in lost:
                await bounded(timeout, "register", backend.register, record, ttl)
        except RegistryError as exc:
            if not failing:
                log.warning("registry heartbeat failed, will keep trying: %s", exc)
            failing = True
            continue
        if due:
            renewed = anyio.current_time()
        if failing:
            log.warning("registry reachable again; instances re-registered")
        elif lost and not due:
            names = ", ".join(sorted({r.service for r in lost}))
            log.warning("the registry had lost the records of %s; registered again", names)
        failing = False


async def _lost(
    backend: Any, records: list[InstanceRecord], timeout: float
) -> list[InstanceRecord]:
    """The records the registry no longer has: a cheap look-up of each when the backend has
    one (`is_registered(service, instance_id)`), else a listing of their services."""
    is_registered = getattr(backend, "is_registered", None)
    if is_registered is not None:
        return [
            r
            for r in records
            if not await bounded(timeout, "look-up", is_registered, r.service, r.instance_id)
        ]
    listed: set[tuple[str, str]] = set()
    for service in sorted({r.service for r in records}):
        found = await bounded(timeout, "listing", backend.list_instances, service)
        listed.update((r.service, r.instance_id) for r in found)
    return [r for r in records if (r.service, r.instance_id) not in listed]
