"""Calls from local processes, carried on to the services they name.

The daemon's unix socket serves this handler in place of a node's dispatcher: a REQUEST for
`service.method` goes on through the daemon's Client (resolution, the request and response
schemas, each method's own channel), and one for `~EVENT` is an emit. The caller's meta
travels on: its corrid, traceparent, userid and deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import anyio

from jesus import event_names
from jesus.errors import (
    CallError,
    ConfigurationError,
    EventNotDelivered,
    InvalidRequest,
    Unavailable,
    UnknownMethod,
)
from jesus.messages import Meta, ResponseMode
from jesus.runtime.client import Client
from jesus.runtime.context import current_deadline, current_meta
from jesus.security.caller import Caller
from jesus.transport import PreparedCall
from jesus.transport.contract import ProviderLink
from jesus_daemon.identity import Identities
from jesus_daemon.providers import Providers

EMIT_PREFIX = event_names.LISTENER_PREFIX  # a REQUEST for "~order.created" emits it
_EVENT_MODES = (ResponseMode.NO_RESPONSE, ResponseMode.ACK)


class Relay:
    """A CallHandler whose methods are every method and event the registry knows; with
    `providers`, a process may also offer services over its connection (AcceptsProviders)."""

    def __init__(
        self,
        client: Client,
        providers: Providers | None = None,
        identities: Identities | None = None,
        clients: Mapping[str, Client] | None = None,
    ) -> None:
        self.client = client
        self.providers = providers
        # A process's calls go out as the service it is, with that service's certificate.
        self.identities = identities
        self.clients = clients or {}

    def _as(self, call: PreparedCall) -> tuple[Client, str | None]:
        """The Client a call goes out with, and the name it is sent as."""
        sender = call.meta.sender
        if self.identities is None:
            return self.client, sender
        name = self.identities.acting_as(call.caller, sender)
        if name is None:  # a process that is no service: the daemon's own, unproven
            return self.client, sender
        return self.clients[name], name

    async def provide(self, hello: dict[str, Any], link: ProviderLink, caller: Caller) -> None:
        if self.providers is None:
            raise Unavailable("this daemon does not take services from its processes")
        await self.providers.provide(hello, link, caller)

    def prepare(
        self, method: str, raw_meta: Any, data: Any, mode: ResponseMode, caller: Caller
    ) -> PreparedCall:
        try:
            meta = Meta.from_wire(raw_meta, mode)
        except ValueError as exc:
            raise InvalidRequest(f"bad meta: {exc}") from None
        if method.startswith(EMIT_PREFIX):
            event = method[len(EMIT_PREFIX) :]
            if not event_names.valid_event(event):
                raise InvalidRequest(f"{event!r} is not an event name", corrid=meta.corrid)
            if mode not in _EVENT_MODES:
                raise InvalidRequest(
                    f"an event is emitted as noResponse or ack, not {mode.value}",
                    corrid=meta.corrid,
                )
        else:
            service, dot, name = method.partition(".")
            if not (service and dot and name):
                raise UnknownMethod(
                    f"{method!r} is neither 'service.method' nor '~event'", corrid=meta.corrid
                )
        deadline = None
        if meta.deadline_ms is not None:
            deadline = anyio.current_time() + meta.deadline_ms / 1000
        # Acked once the next hop accepted it: an ack from the daemon is never a promise
        # that it alone holds.
        return PreparedCall(method, data, meta, deadline, caller=caller, ack_after_run=True)

    async def run(self, call: PreparedCall) -> Any:
        meta = call.meta
        meta_token = current_meta.set(meta)
        deadline_token = current_deadline.set(call.deadline)
        client, sender = self._as(call)
        try:
            if call.name.startswith(EMIT_PREFIX):
                await client.emit(
                    call.name[len(EMIT_PREFIX) :],
                    call.data,
                    mode=meta.mode,
                    userid=meta.userid,
                    sender=sender,
                )
                return None
            return await client.call(
                call.name, call.data, mode=meta.mode, userid=meta.userid, sender=sender
            )
        except (CallError, ConfigurationError, EventNotDelivered) as exc:
            raise _as_call_error(exc, meta) from None
        finally:
            current_meta.reset(meta_token)
            current_deadline.reset(deadline_token)

    async def open_stream(self, call: PreparedCall) -> AsyncIterator[Any]:
        meta = call.meta
        # The runner gives each stream a task of its own: no reset needed.
        current_meta.set(meta)
        current_deadline.set(call.deadline)
        client, sender = self._as(call)
        try:
            stream = client.stream(call.name, call.data, userid=meta.userid, sender=sender)
            async with aclosing(stream) as items:  # type: ignore[type-var]
                async for item in items:
                    yield item
        except (CallError, ConfigurationError) as exc:
            raise _as_call_error(exc, meta) from None

    def declared_mode(self, method: str) -> ResponseMode | None:
        return None  # known only to the registry, and asked of it when the call runs

    def describe(self) -> dict[str, Any]:
        return {}


def _as_call_error(exc: Exception, meta: Meta) -> CallError:
    """What the local caller is told: call errors as they are, the caller's mistakes as
    INVALID_REQUEST, and an event no group took as UNAVAILABLE."""
    if isinstance(exc, CallError):
        error = exc
    elif isinstance(exc, EventNotDelivered):
        error = Unavailable(str(exc))
    else:
        error = InvalidRequest(str(exc))
    if error.corrid is None:
        error.corrid = meta.corrid
    return error
