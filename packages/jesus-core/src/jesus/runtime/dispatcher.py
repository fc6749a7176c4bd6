"""Server side of every transport: find the method, check the request, run the handler under
the caller's deadline and corrid, check what it returns.

Transports call `prepare` as soon as a request is decoded (this is where an ack is earned),
then `run` for a result or `open_stream` for items.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from jesus import events
from jesus.errors import (
    CallError,
    DeadlineExceeded,
    InvalidRequest,
    InvalidResponse,
    RemoteFailure,
    UnknownMethod,
)
from jesus.messages import Meta, ResponseMode
from jesus.middleware import CallInfo, Middleware, chain
from jesus.runtime.context import current_deadline, current_meta
from jesus.runtime.service import MethodSpec, Service
from jesus.validation.base import SchemaValidator, schema_error
from jesus.validation.cache import ValidatorCache

log = logging.getLogger("jesus.server")


@dataclass(slots=True)
class MethodEntry:
    service: Service
    spec: MethodSpec
    request: SchemaValidator | None
    response: SchemaValidator | None
    full_name: str
    channel: str


@dataclass(slots=True)
class PreparedCall:
    entry: MethodEntry
    data: Any
    meta: Meta
    # Absolute deadline on the anyio clock, from meta.deadline_ms; the transport enforces it
    # (see jesus.runtime.spawner) and nested calls inherit it.
    deadline: float | None = None


class CallDispatcher:
    def __init__(
        self,
        services: Iterable[Service],
        validators: ValidatorCache,
        middleware: list[Middleware] | None = None,
    ) -> None:
        self.methods: dict[str, MethodEntry] = {}
        for service in services:
            for listener in service.listeners.values():
                spec = MethodSpec(
                    name=events.listener_method(listener.event),
                    handler=listener.handler,
                    request=listener.schema,
                    response=True,
                    mode=ResponseMode.ACK,
                    channel=listener.channel,
                )
                full = f"{service.name}.{spec.name}"
                self.methods[full] = MethodEntry(
                    service=service,
                    spec=spec,
                    request=validators.get(spec.request),
                    response=None,
                    full_name=full,
                    channel=str(spec.channel),
                )
            for spec in service.methods.values():
                full = f"{service.name}.{spec.name}"
                self.methods[full] = MethodEntry(
                    service=service,
                    spec=spec,
                    request=validators.get(spec.request),
                    response=validators.get(spec.response),
                    full_name=full,
                    channel=str(spec.channel),
                )
        self._run = chain(middleware or [], "server", self._invoke)
        self._open = chain(middleware or [], "server", self._open_generator)

    def prepare(self, method: str, raw_meta: Any, data: Any, mode: ResponseMode) -> PreparedCall:
        """Check a decoded request; raises a CallError that the transport sends back."""
        try:
            meta = Meta.from_wire(raw_meta, mode)
        except ValueError as exc:
            raise InvalidRequest(f"bad meta: {exc}") from None
        entry = self.methods.get(method)
        if entry is None:
            raise UnknownMethod(f"no method {method!r} here", corrid=meta.corrid)
        declared = entry.spec.mode
        if (declared is ResponseMode.STREAM) != (mode is ResponseMode.STREAM):
            raise InvalidRequest(
                f"{method} is declared {declared.value!r} and cannot be called as {mode.value!r}",
                corrid=meta.corrid,
            )
        check = entry.request
        if check is not None and not check.is_valid(data):
            raise schema_error(
                InvalidRequest,
                f"request to {method} does not match its schema",
                check,
                data,
                meta.corrid,
            )
        deadline = None
        if meta.deadline_ms is not None:
            deadline = anyio.current_time() + meta.deadline_ms / 1000
        return PreparedCall(entry, data, meta, deadline)

    def deadline_exceeded(self, call: PreparedCall) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"{call.entry.full_name} ran past the caller's deadline", corrid=call.meta.corrid
        )

    @staticmethod
    def _info(call: PreparedCall) -> CallInfo:
        return CallInfo(
            service=call.entry.service.name,
            method=call.entry.spec.name,
            data=call.data,
            meta=call.meta,
            mode=call.meta.mode,
            channel=call.entry.channel,
        )

    async def run(self, call: PreparedCall) -> Any:
        """Run a call to completion; returns the checked result. The deadline is the
        transport's to enforce (it cancels the task); nested calls see it."""
        meta = call.meta
        info = self._info(call)
        token = current_meta.set(meta)
        deadline_token = current_deadline.set(call.deadline)
        try:
            return await self._run(info)
        except CallError as exc:
            if exc.corrid is None:
                exc.corrid = meta.corrid
            raise
        except Exception as exc:
            log.exception("handler %s failed [corrid=%s]", call.entry.full_name, meta.corrid)
            raise RemoteFailure(
                f"{call.entry.full_name} failed: {type(exc).__name__}: {exc}", corrid=meta.corrid
            ) from exc
        finally:
            current_meta.reset(token)
            current_deadline.reset(deadline_token)

    async def _invoke(self, info: CallInfo) -> Any:
        entry = self.methods[f"{info.service}.{info.method}"]
        result = await entry.spec.handler(info.data)
        check = entry.response
        if check is not None and not check.is_valid(result):
            raise schema_error(
                InvalidResponse,
                f"{entry.full_name} returned a value that does not match its response schema",
                check,
                result,
                info.meta.corrid,
            )
        return result

    async def _open_generator(self, info: CallInfo) -> Any:
        return self.methods[f"{info.service}.{info.method}"].spec.handler(info.data)

    async def open_stream(self, call: PreparedCall) -> AsyncIterator[Any]:
        """Yield the handler's items, each checked; errors come out as CallError."""
        entry, meta = call.entry, call.meta
        # The transport gives each stream a task of its own, so the context need not be reset.
        current_meta.set(meta)
        current_deadline.set(call.deadline)
        try:
            agen = await self._open(self._info(call))  # middleware sees the stream open
        except CallError:
            raise
        except Exception as exc:
            log.exception("opening stream %s failed [corrid=%s]", entry.full_name, meta.corrid)
            raise RemoteFailure(
                f"{entry.full_name} failed: {type(exc).__name__}: {exc}", corrid=meta.corrid
            ) from exc
        try:
            while True:
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
                except CallError as exc:
                    if exc.corrid is None:
                        exc.corrid = meta.corrid
                    raise
                except Exception as exc:
                    log.exception("stream %s failed [corrid=%s]", entry.full_name, meta.corrid)
                    raise RemoteFailure(
                        f"{entry.full_name} failed: {type(exc).__name__}: {exc}",
                        corrid=meta.corrid,
                    ) from exc
                check = entry.response
                if check is not None and not check.is_valid(item):
                    raise schema_error(
                        InvalidResponse,
                        f"{entry.full_name} streamed an item that does not match its schema",
                        check,
                        item,
                        meta.corrid,
                    )
                yield item
        finally:
            await agen.aclose()
