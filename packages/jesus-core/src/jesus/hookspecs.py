"""The plugin contract. Every hook is synchronous (pluggy has no async hooks) and hands the
plugin a `register` callback, so one plugin may contribute several things and the host keeps
control of naming and conflicts. Anything async a plugin contributes is awaited by the host.

Plugins are found through the entry-point group `jesus`; the core's own codecs,
compressions, validators and registry register through these same hooks (`jesus.builtins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "jesus"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def jesus_register_codecs(register: Callable[[Any], None]) -> None:
    """Contribute serialization formats.

    Called once when the plugin manager builds its catalog. Call `register(codec)` for each
    codec: an object with `name` (the channel token, e.g. "msgpack"), `content_type`, and
    `encode(value) -> bytes` / `decode(bytes) -> value` (raising ValueError on bad input).
    Return nothing. A later plugin may not reuse a name already registered.
    """


@hookspec
def jesus_register_compressions(register: Callable[[Any], None]) -> None:
    """Contribute compressions.

    Called once when the catalog is built. Call `register(compression)` with an object that has
    `name` (channel token, e.g. "zstd"), `content_encoding` (HTTP token or None),
    `compress(bytes) -> bytes` and `decompress(bytes, max_size) -> bytes`, which must raise
    `jesus.errors.TooLarge` rather than produce more than `max_size` bytes, and ValueError on
    corrupt input. Return nothing.
    """


@hookspec
def jesus_register_transports(register: Callable[[Any], None]) -> None:
    """Contribute transports.

    Called once when the catalog is built. Call `register(transport)` with an object following
    `jesus.transport.Transport`: a URL `scheme` (the channel's first token, e.g. "tcp"), the
    response `modes` it carries, whether it carries `tls` and whether it is `local` only,
    `listen(handler, bind, options)` returning a `jesus.transport.Server` that serves the
    `CallHandler` through a `jesus.transport.CallRunner`, and `client(options, task_group)`
    returning a `TransportClient` that sends `OutgoingCall`s. It must pass
    `jesus.testing.transport.TransportConformance`. Return nothing.
    """


@hookspec
def jesus_register_validators(register: Callable[[Any], None]) -> None:
    """Contribute JSON Schema validator backends.

    Called once when the catalog is built. Call `register(backend)` with a
    `jesus.validation.ValidatorBackend`. The backend with the highest `priority` that supports
    a schema checks messages against it; python-jsonschema (priority 0) is the reference and
    the fallback. A backend must give the same verdicts as the reference. Return nothing.
    """


@hookspec
def jesus_register_registries(register: Callable[[str, Any], None]) -> None:
    """Contribute registry backends (the seed's "schema manager").

    Called once when the catalog is built. Call `register(scheme, factory)`: `factory(url)`
    returns a `jesus.registry.RegistryBackend` for URLs of that scheme (e.g. "memcache").
    Return nothing.
    """


@hookspec
def jesus_register_middleware(register: Callable[[Any], None]) -> None:
    """Contribute call middleware: where tracing, metrics, auth and encryption plug in.

    Called once when the catalog is built. Call `register(middleware)` with a
    `jesus.middleware.Middleware`: its optional `async client(call, call_next)` wraps every
    outgoing call and `async server(call, call_next)` every incoming one, after the request was
    decoded and validated, before the handler runs. For streams they wrap the
    opening of the stream. Middleware runs in registration order, outermost first.
    Return nothing.
    """


@hookspec
def jesus_register_strategies(register: Callable[[str, Any], None]) -> None:
    """Contribute load-balancing strategies.

    Called once when the catalog is built. Call `register(name, factory)`: `factory()`
    returns a `jesus.routing.strategies.Strategy`, whose `order(key, choices, health)` puts
    the candidates of one call (`service.method` as `key`, each with a `.record`) in the
    order to try them; `health` (jesus.routing.health.HealthBook) gives each instance's calls
    in flight and latency. Callers choose it by name: `Client(strategy=name)`. Return nothing.
    """
