"""Trace context in a jesus Meta: `traceparent` in its own field (`t` on the wire, the
`traceparent` header over http), every other field of the propagator (W3C `tracestate` and
`baggage` by default) in the meta's extra map (`x`; the `tracestate` and `baggage` headers
over http). The propagator is OpenTelemetry's global one, so OTEL_PROPAGATORS applies."""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter, TextMapPropagator

from jesus.messages import Meta
from jesus.runtime.context import current_meta

TRACEPARENT = "traceparent"


class MetaGetter(Getter[Meta]):
    def get(self, carrier: Meta, key: str) -> list[str] | None:
        if key == TRACEPARENT:
            value: Any = carrier.traceparent
        else:
            value = carrier.extra.get(key) if carrier.extra else None
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: Meta) -> list[str]:
        found = [TRACEPARENT] if carrier.traceparent else []
        return found + list(carrier.extra or ())


class MetaSetter(Setter[Meta]):
    def set(self, carrier: Meta, key: str, value: str) -> None:
        if key == TRACEPARENT:
            carrier.traceparent = value
        elif carrier.extra is None:
            carrier.extra = {key: value}
        else:
            carrier.extra[key] = value


GETTER = MetaGetter()
SETTER = MetaSetter()


def inject(meta: Meta, context: Context) -> None:
    propagate.get_global_textmap().inject(meta, context=context, setter=SETTER)


def extract(meta: Meta) -> Context:
    return propagate.get_global_textmap().extract(meta, getter=GETTER)


class _Fields:
    """The extra-map keys of the global propagator, kept while it is the same one."""

    propagator: TextMapPropagator | None = None
    keys: tuple[str, ...] = ()


_fields = _Fields()


def carry_on(meta: Meta) -> None:
    """With nothing recording, pass on what the call being handled carries besides its
    traceparent (which the core passes on itself): its tracestate and baggage."""
    parent = current_meta.get()
    if parent is None or not parent.extra:
        return
    propagator = propagate.get_global_textmap()
    if propagator is not _fields.propagator:
        _fields.keys = tuple(sorted(set(propagator.fields) - {TRACEPARENT}))
        _fields.propagator = propagator
    for key in _fields.keys:
        value = parent.extra.get(key)
        if isinstance(value, str) and (meta.extra is None or key not in meta.extra):
            SETTER.set(meta, key, value)
