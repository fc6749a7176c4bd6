"""The middleware: a span and measurements for every call and event delivery, on both ends,
and the trace context carried in the meta from caller to handler.

With no SDK configured (the API's own providers record nothing) a call only passes on the
tracestate and baggage of the call being handled: see `Telemetry.recording`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.metrics import _internal as _metrics_api
from opentelemetry.trace import Link, Tracer, TracerProvider

from jesus.messages import ResponseMode
from jesus.middleware import CallInfo, Middleware, NextCall
from jesus.runtime.context import current_deadline, current_meta
from jesus_otel import propagation
from jesus_otel.describe import describe
from jesus_otel.instruments import Side, byte_counters, client_side, server_side
from jesus_otel.recording import Recording

SCOPE = "jesus_otel"
VERSION = "0.1.0"
_STREAM = ResponseMode.STREAM


def records(provider: Any) -> bool:
    """Whether a provider records anything: the API package's own (no-op, or the proxy that
    stands in until an SDK's is set) do not."""
    return not type(provider).__module__.startswith(
        ("opentelemetry.trace", "opentelemetry.metrics")
    )


# While no global provider is set, `get_tracer_provider()` and `get_meter_provider()` look
# os.environ up on every call for one named there, and a key that is missing costs a KeyError
# (about 1.5 us each, more than the rest of a call's telemetry). So the module attribute they
# read is looked at first: None (and none named in the environment) means none is set yet.
_PROBE = (
    not {"OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER"} & set(os.environ)
    and hasattr(trace, "_TRACER_PROVIDER")
    and hasattr(_metrics_api, "_METER_PROVIDER")
)


@dataclass(frozen=True, slots=True)
class _State:
    """What the providers in use give: made again whenever they change."""

    tracer_provider: Any
    meter_provider: Any
    tracer: Tracer | None
    client: Side | None
    server: Side | None
    on: bool

    @classmethod
    def of(cls, tracer_provider: Any, meter_provider: Any) -> _State:
        tracer = None
        if records(tracer_provider):
            tracer = tracer_provider.get_tracer(SCOPE, VERSION)
        client = server = None
        if records(meter_provider):
            meter = meter_provider.get_meter(SCOPE, VERSION)
            client, server = client_side(meter), server_side(meter)
            byte_counters(meter)
        on = tracer is not None or client is not None
        return cls(tracer_provider, meter_provider, tracer, client, server, on)


class Telemetry(Middleware):
    """Spans and metrics into the global OpenTelemetry providers, or the ones given to
    `use()`. The plugin registers one, `jesus_otel.TELEMETRY`."""

    name = "otel"

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider: TracerProvider | None = None
        self._meter_provider: MeterProvider | None = None
        self._state: _State | None = None
        self._probe = False  # whether the global providers' module attributes tell it all
        self.use(tracer_provider, meter_provider)

    def use(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        """Record into these providers from the next call on; None: the global ones, as set
        by `opentelemetry.trace.set_tracer_provider` / `metrics.set_meter_provider`."""
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._state = None
        self._probe = _PROBE and tracer_provider is None and meter_provider is None

    def recording(self) -> _State | None:
        """What to record into, or None while nothing would record (no SDK configured)."""
        if self._probe and trace._TRACER_PROVIDER is None and _metrics_api._METER_PROVIDER is None:
            return None  # no SDK configured
        tracer_provider = self._tracer_provider or trace.get_tracer_provider()
        meter_provider = self._meter_provider or metrics.get_meter_provider()
        state = self._state
        if (
            state is None
            or state.tracer_provider is not tracer_provider
            or state.meter_provider is not meter_provider
        ):
            state = self._state = _State.of(tracer_provider, meter_provider)
        return state if state.on else None

    # ------------------------------------------------------------------ client

    async def client(self, call: CallInfo, call_next: NextCall) -> Any:
        state = self.recording()
        if state is None:
            if current_meta.get() is not None:
                propagation.carry_on(call.meta)
            return await call_next(call)
        description = describe(call, server=False)
        parent = _parent_context(call)
        span = None
        context = parent
        if state.tracer is not None:
            span = state.tracer.start_span(
                description.name,
                context=parent,
                kind=description.kind,
                attributes=description.span,
            )
            context = trace.set_span_in_context(span, parent)
        propagation.inject(call.meta, context)
        deadline = call.deadline
        if deadline is None and call.meta.deadline_ms is not None:
            deadline = anyio.current_time() + call.meta.deadline_ms / 1000
        recording = Recording(description, span, state.client, False, deadline)
        try:
            result = await call_next(call)
        except BaseException as exc:
            recording.end(exc)
            raise
        if call.mode is _STREAM:
            return _traced_items(result, recording, None)
        recording.end(None)
        return result

    # ------------------------------------------------------------------ server

    async def server(self, call: CallInfo, call_next: NextCall) -> Any:
        state = self.recording()
        if state is None:
            return await call_next(call)
        description = describe(call, server=True)
        parent = propagation.extract(call.meta)
        span = None
        context = parent
        if state.tracer is not None:
            links = None
            if description.event:
                # The process span's parent is the emit's (one message, no other span around
                # it), and it links to it too, as the messaging conventions ask.
                remote = trace.get_current_span(parent).get_span_context()
                links = [Link(remote)] if remote.is_valid else None
            span = state.tracer.start_span(
                description.name,
                context=parent,
                kind=description.kind,
                attributes=description.span,
                links=links,
            )
            context = trace.set_span_in_context(span, parent)
            # The call being handled now names this span: what the core copies from it
            # (nested calls, relays, a DaemonClient's calls) continues this trace.
            propagation.inject(call.meta, context)
        recording = Recording(description, span, state.server, True, current_deadline.get())
        token = otel_context.attach(context)
        try:
            result = await call_next(call)
        except BaseException as exc:
            recording.end(exc)
            raise
        finally:
            otel_context.detach(token)
        if call.mode is _STREAM:
            return _traced_items(result, recording, context)
        recording.end(None)
        return result


def _parent_context(call: CallInfo) -> Context:
    """The current context; where no span is active in it but the outgoing meta carries a
    trace (the core copied the traceparent of a call handled without a server span, e.g. by
    a daemon's relay), that trace."""
    current = otel_context.get_current()
    if trace.get_current_span(current).get_span_context().is_valid or not call.meta.traceparent:
        return current
    propagation.carry_on(call.meta)
    return propagation.extract(call.meta)


async def _traced_items(
    items: Any, recording: Recording, context: Context | None
) -> AsyncIterator[Any]:
    """A stream's items; its span ends when the stream does: exhausted, failed, left by the
    consumer or cancelled. On the server (`context`), the handler runs in its span's context;
    no context stays attached across a yield."""
    error: BaseException | None = None
    try:
        while True:
            token = None if context is None else otel_context.attach(context)
            try:
                item = await items.__anext__()
            except StopAsyncIteration:
                return
            finally:
                if token is not None:
                    otel_context.detach(token)
            yield item
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            aclose = getattr(items, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            recording.end(error)
