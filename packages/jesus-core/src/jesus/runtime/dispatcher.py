"""What a server serves: find the method, check the request, run the handler under the
caller's deadline and corrid, check what it returns. The core's `CallHandler`; transports
reach it through a `jesus.transport.CallRunner`, which runs each call's life around it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from jesus import event_names
from jesus.errors import (
    CallError,
    InvalidRequest,
    InvalidResponse,
    PermissionDenied,
    RemoteFailure,
    SealRefused,
    TooLarge,
    UnknownMethod,
    WrongChannel,
)
from jesus.limits import Limits
from jesus.messages import Meta, ResponseMode
from jesus.middleware import CallInfo, Middleware, chain
from jesus.payload import decode_payload
from jesus.runtime.bulkhead import Bulkhead
from jesus.runtime.context import current_deadline, current_meta, proven_caller
from jesus.runtime.service import MethodSpec, Service
from jesus.sealing.envelope import CODEC_NAMES, MAX_SEALED
from jesus.sealing.seal import Opener, SealedCall, seal_error, to_wire
from jesus.security.caller import Caller
from jesus.throttled_log import ThrottledLog
from jesus.transport.contract import PreparedCall
from jesus.transport.futures import clock_factory
from jesus.transport.traffic import SERVER, TRAFFIC, UNCOUNTED, Meter
from jesus.validation.base import SchemaValidator, schema_error
from jesus.validation.cache import ValidatorCache

log = logging.getLogger("jesus.server")
# The scheme of a handler that serves every method whatever its channels.
ANY_TRANSPORT = "*"


@dataclass(slots=True)
class MethodEntry:
    service: Service
    spec: MethodSpec
    request: SchemaValidator | None
    response: SchemaValidator | None
    full_name: str
    channel: str
    transports: frozenset[str]  # where it is served; a call by any other is refused
    group: str | None = None  # a listener's group
    bulkhead: Bulkhead | None = None  # the method's concurrency limit
    meter: Meter = UNCOUNTED  # the bytes of its calls


class ServedOver:
    """The dispatcher as one transport's listener sees it: only what is declared on that
    transport is served, described and announced there."""

    def __init__(self, dispatcher: CallDispatcher, scheme: str) -> None:
        self.dispatcher = dispatcher
        self.scheme = scheme
        self.run = dispatcher.run
        self.open_stream = dispatcher.open_stream
        # A C-level partial, not a method that calls on: this runs once per request.
        self.prepare = partial(dispatcher.prepare, scheme=scheme)  # type: ignore[method-assign]
        self._description = {
            service.name: describe(service, scheme) for service in dispatcher.services
        }

    def prepare(
        self, method: str, raw_meta: Any, data: Any, mode: ResponseMode, caller: Caller
    ) -> PreparedCall:
        return self.dispatcher.prepare(method, raw_meta, data, mode, caller, self.scheme)

    def declared_mode(self, method: str) -> ResponseMode | None:
        entry = self.dispatcher.methods.get(method)
        if entry is None or not _served(self.scheme, entry.transports):
            return None
        return entry.spec.mode

    def describe(self) -> dict[str, Any]:
        return self._description


class CallDispatcher:
    def __init__(
        self,
        services: Iterable[Service],
        validators: ValidatorCache,
        middleware: list[Middleware] | None = None,
        opener: Opener | None = None,
        codecs: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.services = list(services)
        # Sealed methods: the node's keys and grants, and the codecs of sealed values.
        self.opener = opener
        self.codecs = codecs or {}
        self.limits = limits or Limits()
        # The serving loop's clock, bound once (a loop look-up is a getpid on Python 3.11).
        self._clock = clock_factory()
        self.methods: dict[str, MethodEntry] = {}
        for service in self.services:
            for subscription in service.listeners.values():
                # An event reaches its listener as an ack call of the method ~PATTERN.
                spec = MethodSpec(
                    name=event_names.listener_method(subscription.event),
                    handler=subscription.handler,
                    request=subscription.schema,
                    response=True,
                    mode=ResponseMode.ACK,
                    channels=subscription.channels,
                    allow=subscription.allow,
                    seal=subscription.seal,
                    relay=subscription.relay,
                )
                self._add(service, spec, validators, response=False, group=subscription.group)
            for spec in service.methods.values():
                self._add(service, spec, validators, response=True)
        invoke = self._invoke
        self._run = chain(middleware or [], "server", invoke)
        # No middleware around calls: run() calls the handler itself, with no CallInfo made.
        self._bare = self._run is invoke
        self._open = chain(middleware or [], "server", self._open_generator)
        self._refusals = ThrottledLog(log)

    def served_over(self, scheme: str) -> ServedOver:
        """The handler for the listener of transport `scheme` (`ANY_TRANSPORT`: for calls
        that a node daemon forwards, which checked the channel, seal and `allow` itself)."""
        return ServedOver(self, scheme)

    def _add(
        self,
        service: Service,
        spec: MethodSpec,
        validators: ValidatorCache,
        response: bool,
        group: str | None = None,
    ) -> None:
        full = f"{service.name}.{spec.name}"
        self.methods[full] = MethodEntry(
            service=service,
            spec=spec,
            request=validators.get(spec.request),
            response=validators.get(spec.response) if response else None,
            full_name=full,
            channel=str(spec.channel),
            transports=spec.transports,
            group=group,
            bulkhead=None if spec.concurrency is None else Bulkhead(full, spec.concurrency),
            meter=TRAFFIC.meter(SERVER, str(spec.channel), full),
        )

    def prepare(
        self,
        method: str,
        raw_meta: Any,
        data: Any,
        mode: ResponseMode,
        caller: Caller,
        scheme: str,
    ) -> PreparedCall:
        """Check a decoded request that came by transport `scheme` from `caller`; raises a
        CallError that the transport sends back."""
        try:
            meta = Meta.from_wire(raw_meta, mode)
        except ValueError as exc:
            raise InvalidRequest(f"bad meta: {exc}") from None
        entry = self.methods.get(method)
        if entry is None:
            raise UnknownMethod(f"no method {method!r} here", corrid=meta.corrid)
        if scheme not in entry.transports and scheme != ANY_TRANSPORT:  # inline: per call
            raise WrongChannel(
                f"{method} is not served over {scheme}; it is served over "
                f"{', '.join(sorted(entry.transports))}",
                corrid=meta.corrid,
            )
        if scheme == ANY_TRANSPORT:
            # Handed on by the node daemon, which opened the seal and checked `allow` against
            # the caller's proof; over this process's own connection to it, none is left.
            return self._check(entry, method, meta, data, mode, caller, None, upstream=True)
        sealed = None
        if meta.seal is not None or entry.spec.seal is not None:
            data, caller, sealed = self._unseal(entry, method, meta, data, caller)
            try:
                return self._check(entry, method, meta, data, mode, caller, sealed)
            except CallError as exc:
                raise seal_error(sealed, exc) from None
        return self._check(entry, method, meta, data, mode, caller, None)

    def _check(
        self,
        entry: MethodEntry,
        method: str,
        meta: Meta,
        data: Any,
        mode: ResponseMode,
        caller: Caller,
        sealed: SealedCall | None,
        upstream: bool = False,
    ) -> PreparedCall:
        """The checks of a request that came by the right transport, opened if sealed
        (`upstream`: who may call was checked before it came)."""
        allowed = entry.spec.allow
        if allowed is not None and not upstream and caller.name not in allowed:
            self._refusals.warning(
                "refused %s to %s (allowed: %s) [corrid=%s]",
                method,
                caller,
                ", ".join(sorted(allowed)),
                meta.corrid,
            )
            who = "an anonymous caller" if caller.name is None else repr(caller.name)
            raise PermissionDenied(f"{who} may not call {method}", corrid=meta.corrid)
        declared = entry.spec.mode
        if (declared is ResponseMode.STREAM) != (mode is ResponseMode.STREAM):
            raise InvalidRequest(
                f"{method} is declared {declared.value!r} and cannot be called as {mode.value!r}",
                corrid=meta.corrid,
            )
        check = entry.request
        if check is not None and not check.is_valid(data):
            raise schema_error(InvalidRequest, _mismatch(entry, meta), check, data, meta.corrid)
        deadline = None
        if meta.deadline_ms is not None:
            deadline = self._clock() + meta.deadline_ms / 1000
        call = PreparedCall(
            entry.full_name,
            data,
            meta,
            deadline,
            entry,
            caller,
            sealed,
            entry.spec.relay,
            meter=entry.meter,
        )
        if entry.bulkhead is not None:
            call.release = entry.bulkhead.enter(meta.corrid)  # last: nothing else can refuse
        return call

    def _unseal(
        self, entry: MethodEntry, method: str, meta: Meta, data: Any, caller: Caller
    ) -> tuple[Any, Caller, SealedCall]:
        """Open a sealed request: the value, the caller its seal proves, the call's keys."""
        required = entry.spec.seal
        try:
            if required is None:
                raise SealRefused(f"{method} is not sealed, yet the request is")
            if meta.seal is None:
                raise SealRefused(f"{method} must be sealed {required!r}; the request is not")
            assert self.opener is not None, "serve() makes an Opener for sealed methods"
            if isinstance(data, bytes | str) and len(data) > MAX_SEALED:
                # Opened on the event loop, before the seal is known good: bounded, so that
                # no peer can stall the loop with a large forged one.
                raise TooLarge(
                    f"a sealed request carries at most {MAX_SEALED} bytes, not {len(data)}",
                    corrid=meta.corrid,
                )
            plaintext, codec, name, sealed = self.opener.open_request(data, method, meta, required)
        except SealRefused as exc:
            exc.corrid = meta.corrid
            self._refusals.warning(
                "refused %s from %s: %s [corrid=%s]", method, caller, exc.message, meta.corrid
            )
            raise
        value, _ = decode_payload(self.codecs[codec], None, plaintext, False, self.limits, False)
        proven = Caller(name, "seal", caller.uid, caller.pid, caller.address)
        return value, proven, sealed

    def _seal_answer(self, call: PreparedCall, value: Any, index: int) -> Any:
        sealed: SealedCall = call.seal
        codec = CODEC_NAMES[sealed.codec]
        try:
            plaintext = self.codecs[codec].encode(value)
        except (ValueError, TypeError) as exc:
            raise InvalidResponse(
                f"{call.name} returned a value {codec} cannot encode: {exc}",
                corrid=call.meta.corrid,
            ) from None
        return to_wire(codec, Opener.seal_answer(sealed, plaintext, index))

    @staticmethod
    def _info(call: PreparedCall) -> CallInfo:
        entry: MethodEntry = call.entry
        return CallInfo(
            service=entry.service.name,
            method=entry.spec.name,
            data=call.data,
            meta=call.meta,
            mode=call.meta.mode,
            channel=entry.channel,
            caller=call.caller,
            group=entry.group,
            size=call.size,
        )

    async def run(self, call: PreparedCall) -> Any:
        """Run a call to completion; returns the checked result. The deadline is the runner's
        to enforce (it cancels the task); nested calls see it."""
        meta = call.meta
        token = current_meta.set(meta)
        deadline_token = current_deadline.set(call.deadline)
        caller_token = proven_caller.set(call.caller)
        try:
            if self._bare:
                entry: MethodEntry = call.entry
                result = self._checked(entry, await entry.spec.handler(call.data), meta)
            else:
                result = await self._run(self._info(call))
            return result if call.seal is None else self._seal_answer(call, result, 0)
        except CallError as exc:
            if exc.corrid is None:
                exc.corrid = meta.corrid
            raise exc if call.seal is None else seal_error(call.seal, exc) from None
        except Exception as exc:
            failure = _failure(call, exc)
            raise failure if call.seal is None else seal_error(call.seal, failure) from exc
        finally:
            current_meta.reset(token)
            current_deadline.reset(deadline_token)
            proven_caller.reset(caller_token)

    async def _invoke(self, info: CallInfo) -> Any:
        entry = self.methods[f"{info.service}.{info.method}"]
        return self._checked(entry, await entry.spec.handler(info.data), info.meta)

    @staticmethod
    def _checked(entry: MethodEntry, result: Any, meta: Meta) -> Any:
        check = entry.response
        if check is not None and not check.is_valid(result):
            raise schema_error(
                InvalidResponse,
                f"{entry.full_name} returned a value that does not match its response schema",
                check,
                result,
                meta.corrid,
            )
        return result

    async def _open_generator(self, info: CallInfo) -> Any:
        return self.methods[f"{info.service}.{info.method}"].spec.handler(info.data)

    def open_stream(self, call: PreparedCall) -> AsyncIterator[Any]:
        """The handler's items, each checked (and sealed); errors come out as CallError."""
        return self._items(call) if call.seal is None else self._sealed_items(call)

    async def _sealed_items(self, call: PreparedCall) -> AsyncIterator[Any]:
        items = self._items(call)
        try:
            async for item in items:
                yield item
        except CallError as exc:
            raise seal_error(call.seal, exc) from None
        finally:
            await items.aclose()  # type: ignore[attr-defined]
        sealed: SealedCall = call.seal
        yield to_wire(CODEC_NAMES[sealed.codec], Opener.seal_end(sealed))

    async def _items(self, call: PreparedCall) -> AsyncIterator[Any]:
        meta = call.meta
        entry: MethodEntry = call.entry
        # The runner gives each stream a task of its own, so the context need not be reset.
        current_meta.set(meta)
        current_deadline.set(call.deadline)
        proven_caller.set(call.caller)
        try:
            agen = await self._open(self._info(call))  # middleware sees the stream open
        except CallError:
            raise
        except Exception as exc:
            raise _failure(call, exc) from exc
        check, seal = entry.response, call.seal
        index = 0
        try:
            try:
                async for item in agen:  # per item: no more than the check (and the seal)
                    if check is not None and not check.is_valid(item):
                        raise schema_error(
                            InvalidResponse,
                            f"{call.name} streamed an item that does not match its schema",
                            check,
                            item,
                            meta.corrid,
                        )
                    if seal is not None:
                        item = self._seal_answer(call, item, index)
                        index += 1
                    yield item
            except CallError as exc:
                if exc.corrid is None:
                    exc.corrid = meta.corrid
                raise
            except Exception as exc:
                raise _failure(call, exc) from exc
        finally:
            await agen.aclose()


def _failure(call: PreparedCall, exc: Exception) -> RemoteFailure:
    log.error("handler %s failed [corrid=%s]", call.name, call.meta.corrid, exc_info=exc)
    return RemoteFailure(
        f"{call.name} failed: {type(exc).__name__}: {exc}", corrid=call.meta.corrid
    )


def _mismatch(entry: MethodEntry, meta: Meta) -> str:
    """What a request its schema refused was: an event names its listener, as the emitter's
    own check does."""
    name = entry.spec.name
    if meta.event is not None and name.startswith(event_names.LISTENER_PREFIX):
        return (
            f"event {meta.event} does not match the schema of {entry.service.name}'s "
            f"listener {name[len(event_names.LISTENER_PREFIX) :]}"
        )
    return f"request to {entry.full_name} does not match its schema"


def _served(scheme: str, transports: frozenset[str]) -> bool:
    return scheme in transports or scheme == ANY_TRANSPORT


def describe(service: Service, scheme: str) -> dict[str, Any]:
    """What a service serves over transport `scheme` (the HTTP description endpoint shows
    it): each method and listener with every channel it is served on."""
    return {
        "name": service.name,
        "version": service.version,
        "description": service.description,
        "methods": {
            name: spec.record().to_json()
            for name, spec in sorted(service.methods.items())
            if _served(scheme, spec.transports)
        },
        "listens": {
            event: spec.record()
            for event, spec in sorted(service.listeners.items())
            if _served(scheme, frozenset(c.transport for c in spec.channels))
        },
        "emits": {event: spec.record() for event, spec in sorted(service.emits.items())},
    }
