"""Declaring a service: its methods with their schemas, modes and channels."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from jesus import event_names
from jesus.channel import ChannelSpec, parse_channels
from jesus.errors import ConfigurationError
from jesus.messages import ResponseMode
from jesus.registry.base import MAX_TIMEOUT, MethodRecord
from jesus.routing.retries import Retry
from jesus.sealing.envelope import strength
from jesus.validation import check_schema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from jesus.runtime.client import Client

F = TypeVar("F", bound=Callable[..., Any])
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def _seal(seal: str | None, what: str) -> str | None:
    try:
        strength(seal)
    except ValueError as exc:
        raise ConfigurationError(f"{what}: {exc}") from None
    return seal


def _allow(callers: Iterable[str] | None, what: str) -> frozenset[str] | None:
    if callers is None:
        return None
    if isinstance(callers, str):
        callers = [callers]
    allowed = frozenset(callers)
    if not allowed or not all(isinstance(c, str) and _NAME.match(c) for c in allowed):
        raise ConfigurationError(f"{what}: allow must list service names, got {callers!r}")
    return allowed


@dataclass(frozen=True)
class MethodSpec:
    """A method as declared. It is served only over the transports of its `channels` (the
    first is the one callers prefer); `allow`, when set, names the only services that may
    call it, as proven by the transport or the seal (never by the caller's `from`)."""

    name: str
    handler: Callable[..., Any]
    request: Any
    response: Any
    mode: ResponseMode
    channels: tuple[ChannelSpec, ...]
    description: str = ""
    allow: frozenset[str] | None = None
    seal: str | None = None
    # The handler carries the call on to another process: an ack waits for it.
    relay: bool = False
    # Published for callers (jesus.routing.retries): replay is safe, attempts, default deadline.
    idempotent: bool = False
    retry: Retry = field(default_factory=Retry)
    timeout: float | None = None
    # Calls of this method the server runs at once; past it, RESOURCE_EXHAUSTED (a bulkhead).
    concurrency: int | None = None

    @property
    def channel(self) -> ChannelSpec:
        return self.channels[0]

    @property
    def transports(self) -> frozenset[str]:
        return frozenset(c.transport for c in self.channels)

    def record(self) -> MethodRecord:
        return MethodRecord(
            request=self.request,
            response=self.response,
            mode=self.mode,
            channel=str(self.channel),
            description=self.description,
            channels=tuple(str(c) for c in self.channels),
            seal=self.seal,
            idempotent=self.idempotent,
            retry=self.retry,
            timeout=self.timeout,
        )


@dataclass(frozen=True)
class ListenerSpec:
    """An event this service listens to. `event` may end in `.*` (a prefix match); `allow`,
    when set, names the only emitters it accepts."""

    event: str
    handler: Callable[..., Any]
    schema: Any
    channels: tuple[ChannelSpec, ...]
    group: str
    allow: frozenset[str] | None = None
    seal: str | None = None
    relay: bool = False

    @property
    def channel(self) -> ChannelSpec:
        return self.channels[0]

    def record(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "channel": str(self.channel),
            "channels": [str(c) for c in self.channels],
            "group": self.group,
            **({"seal": self.seal} if self.seal else {}),
        }


@dataclass(frozen=True)
class EmitSpec:
    """An event this service emits: the schema its data follows and its mode (noResponse or
    ack). Listeners choose the channel they receive it on."""

    event: str
    schema: Any
    mode: ResponseMode

    def record(self) -> dict[str, Any]:
        return {"schema": self.schema, "mode": str(self.mode)}


@dataclass
class Service:
    """A named, versioned set of methods.

    `channel` is the default for methods that name none. Inside a handler, `service.call`,
    `service.stream` and `service.notify` reach other services with this service as sender,
    inheriting the corrid and deadline of the call being handled.
    """

    name: str
    version: str = "0.1.0"
    channel: str = "tcp+msgpack"
    description: str = ""
    methods: dict[str, MethodSpec] = field(default_factory=dict)
    listeners: dict[str, ListenerSpec] = field(default_factory=dict)
    emits: dict[str, EmitSpec] = field(default_factory=dict)
    uses: dict[str, dict[str, Any]] = field(default_factory=dict)
    client: Client | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigurationError(
                f"service name {self.name!r} must be letters, digits, '_' or '-' (no dots)"
            )
        ChannelSpec.parse(self.channel)

    def method(
        self,
        name: str | None = None,
        *,
        request: Any = True,
        response: Any = True,
        mode: ResponseMode | str = ResponseMode.RESPONSE,
        channel: str | Sequence[str] | None = None,
        description: str | None = None,
        allow: Iterable[str] | None = None,
        seal: str | None = None,
        relay: bool = False,
        idempotent: bool = False,
        retry: int | Retry | None = None,
        timeout: float | None = None,
        concurrency: int | None = None,
    ) -> Callable[[F], F]:
        """Declare an async handler (an async generator for `mode="stream"`).

        `channel` is one channel or a list of them (`["tcp", "http+json"]`); the method is
        served over those transports only. `allow` lists the services that may call it.
        `seal="sign"` makes every request and answer carry a seal (who sent it, unaltered,
        not replayed); `seal="encrypt"` also makes them readable only by the two ends.
        `relay=True` says the handler carries the call on to another process (as the node
        daemon does): an ack call is then acked once the handler returned, so that the ack
        still means the process that runs it took it.

        What callers follow (docs/resilience.md): `idempotent=True` says running a call twice
        does no harm, so a call whose connection broke may be replayed; `retry` is the most
        attempts a call may make (or a `jesus.Retry`); `timeout` the deadline of calls whose
        caller sets none. `concurrency` bounds the calls this server runs at once; past it,
        callers get RESOURCE_EXHAUSTED with a retry-after hint."""
        rmode = ResponseMode(mode)
        try:
            policy = Retry.of(retry)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"{self.name}: {exc}") from None
        if timeout is not None and not (
            isinstance(timeout, int | float) and 0 < timeout <= MAX_TIMEOUT
        ):
            raise ConfigurationError(
                f"{self.name}: timeout must be between 0 and {MAX_TIMEOUT:g} seconds"
            )
        if concurrency is not None and (type(concurrency) is not int or concurrency < 1):
            raise ConfigurationError(f"{self.name}: concurrency must be an integer >= 1")
        check_schema(request)
        check_schema(response)
        specs = parse_channels(channel, self.channel)

        def decorate(fn: F) -> F:
            method_name = name or fn.__name__
            if not _NAME.match(method_name):
                raise ConfigurationError(f"method name {method_name!r} is not valid")
            allowed = _allow(allow, f"{self.name}.{method_name}")
            sealed = _seal(seal, f"{self.name}.{method_name}")
            if method_name in self.methods:
                raise ConfigurationError(f"{self.name}.{method_name} is declared twice")
            is_gen = inspect.isasyncgenfunction(fn)
            if rmode is ResponseMode.STREAM and not is_gen:
                raise ConfigurationError(
                    f"{self.name}.{method_name}: a stream method must be an async generator"
                )
            if rmode is not ResponseMode.STREAM and not inspect.iscoroutinefunction(fn):
                raise ConfigurationError(
                    f"{self.name}.{method_name}: a handler must be an async function"
                )
            self.methods[method_name] = MethodSpec(
                name=method_name,
                handler=fn,
                request=request,
                response=response,
                mode=rmode,
                channels=specs,
                description=description or inspect.getdoc(fn) or "",
                allow=allowed,
                seal=sealed,
                relay=relay,
                idempotent=idempotent,
                retry=policy,
                timeout=None if timeout is None else float(timeout),
                concurrency=concurrency,
            )
            return fn

        return decorate

    def listener(
        self,
        event: str,
        *,
        schema: Any = True,
        channel: str | Sequence[str] | None = None,
        group: str | None = None,
        allow: Iterable[str] | None = None,
        seal: str | None = None,
        relay: bool = False,
    ) -> Callable[[F], F]:
        """Declare an async handler for `event` (`user.created`, or `user.*` for every event
        under `user.`). Listeners of one `group` (default: this service's name) share the
        load; each group gets every event. Published in the registry for emitters to find.
        `allow` lists the emitting services it accepts events from; `seal` is as for
        methods (an encrypted event is readable only by this group's key holders), and so
        is `relay`."""
        if not event_names.valid_pattern(event):
            raise ConfigurationError(
                f"event pattern {event!r} is not valid: dot-separated names, optionally ending in .*"
            )
        check_schema(schema)
        specs = parse_channels(channel, self.channel)
        allowed = _allow(allow, f"{self.name} listener of {event}")
        sealed = _seal(seal, f"{self.name} listener of {event}")

        def decorate(fn: F) -> F:
            if not inspect.iscoroutinefunction(fn):
                raise ConfigurationError(f"{self.name}: a listener must be an async function")
            if event in self.listeners:
                raise ConfigurationError(f"{self.name} listens to {event!r} twice")
            self.listeners[event] = ListenerSpec(
                event, fn, schema, specs, group or self.name, allowed, sealed, relay
            )
            return fn

        return decorate

    def emitter(
        self, event: str, *, schema: Any = True, mode: ResponseMode | str = ResponseMode.NO_RESPONSE
    ) -> None:
        """Declare an event this service emits, the schema of its data, and its mode:
        `noResponse` (fire and forget) or `ack` (emit waits for every listener group)."""
        if not event_names.valid_event(event):
            raise ConfigurationError(f"event name {event!r} is not valid")
        rmode = ResponseMode(mode)
        if rmode not in (ResponseMode.NO_RESPONSE, ResponseMode.ACK):
            raise ConfigurationError(f"event {event!r}: an event's mode is noResponse or ack")
        check_schema(schema)
        self.emits[event] = EmitSpec(event, schema, rmode)

    def use(self, target: str, *, request: Any = True, response: Any = True) -> None:
        """Declare a method of another service this one calls, with the request it sends and
        the response it expects. Checked against the providers when this service starts (and
        by `jesus check`), and again when a provider's new version starts."""
        service, sep, method = target.partition(".")
        if not sep or not _NAME.match(service) or not _NAME.match(method):
            raise ConfigurationError(f"{target!r} must be 'service.method'")
        check_schema(request)
        check_schema(response)
        self.uses[target] = {"request": request, "response": response}

    @property
    def schemes(self) -> set[str]:
        declared = [m.channels for m in self.methods.values()]
        declared += [spec.channels for spec in self.listeners.values()]
        return {c.transport for channels in declared for c in channels}

    def _client(self) -> Client:
        if self.client is None:
            raise ConfigurationError(
                f"service {self.name!r} is not running: start it with jesus.serve(...)"
            )
        return self.client

    async def call(self, target: str, data: Any = None, **kwargs: Any) -> Any:
        return await self._client().call(target, data, sender=self.name, **kwargs)

    async def notify(self, target: str, data: Any = None, **kwargs: Any) -> None:
        await self._client().notify(target, data, sender=self.name, **kwargs)

    def stream(self, target: str, data: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        return self._client().stream(target, data, sender=self.name, **kwargs)

    async def emit(self, event: str, data: Any = None, **kwargs: Any) -> list[str]:
        """Emit `event`, checked against this service's `emitter` declaration when there is
        one (which also gives the default mode). Returns the groups it was delivered to."""
        declared = self.emits.get(event)
        if declared is not None:
            kwargs.setdefault("mode", declared.mode)
            kwargs.setdefault("schema", declared.schema)
        return await self._client().emit(event, data, sender=self.name, **kwargs)
