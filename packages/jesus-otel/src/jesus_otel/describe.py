"""What a call looks like to OpenTelemetry: its span's name, kind and attributes, and the
(low-cardinality) attributes of its metrics, by the RPC conventions for a call and the
messaging ones for an event's delivery."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.trace import SpanKind

from jesus import event_names
from jesus.middleware import CallInfo
from jesus_otel import semconv as sc


@dataclass(slots=True)
class Description:
    name: str
    kind: SpanKind
    span: dict[str, Any]  # the span's attributes
    metric: dict[str, Any]  # the metrics' attributes
    event: bool


def describe(call: CallInfo, server: bool) -> Description:
    event = call.meta.event
    if event is None:
        return _call(call, server)
    return _event(call, event, server)


def _call(call: CallInfo, server: bool) -> Description:
    method = f"{call.service}/{call.method}"
    metric: dict[str, Any] = {
        sc.RPC_SYSTEM_NAME: sc.SYSTEM,
        sc.RPC_METHOD: method,
        sc.JESUS_CHANNEL: call.channel,
    }
    span = {
        **metric,
        sc.JESUS_MODE: call.mode.value,
        sc.JESUS_CORRID: call.meta.corrid,
    }
    if not server:
        span.update(_server_of(call))
    return Description(method, SpanKind.SERVER if server else SpanKind.CLIENT, span, metric, False)


def _event(call: CallInfo, event: str, server: bool) -> Description:
    pattern = call.method[len(event_names.LISTENER_PREFIX) :]
    operation = sc.PROCESS if server else sc.PUBLISH
    metric: dict[str, Any] = {
        sc.MESSAGING_SYSTEM: sc.SYSTEM,
        sc.MESSAGING_OPERATION_NAME: operation,
        sc.MESSAGING_OPERATION_TYPE: sc.PROCESS if server else sc.SEND,
        sc.MESSAGING_DESTINATION: event,
        sc.JESUS_CHANNEL: call.channel,
    }
    if call.group is not None:
        metric[sc.MESSAGING_GROUP] = call.group
    span = {
        **metric,
        sc.MESSAGING_CONVERSATION: call.meta.corrid,
        sc.JESUS_MODE: call.mode.value,
    }
    if pattern != event:
        span[sc.MESSAGING_TEMPLATE] = pattern
    if not server:
        span.update(_server_of(call))
    # A listener's span is named by its pattern (few), an emit's by the event (declared).
    name = f"{operation} {pattern if server else event}"
    return Description(name, SpanKind.CONSUMER if server else SpanKind.PRODUCER, span, metric, True)


def _server_of(call: CallInfo) -> dict[str, Any]:
    """server.address and server.port of where a client sends the call first."""
    route = call.route
    endpoint = None
    if isinstance(route, list) and route:  # a call: the candidates in order
        endpoint = getattr(route[0], "endpoint", None)
    elif isinstance(route, tuple) and len(route) == 3:  # an event: (record, pattern, channel)
        record, _, channel = route
        endpoint = getattr(record, "endpoints", {}).get(channel.spec.transport)
    return _address(endpoint) if isinstance(endpoint, str) else {}


@lru_cache(maxsize=1024)
def _address(endpoint: str) -> dict[str, Any]:
    try:
        parts = urlsplit(endpoint)
        host, port = parts.hostname, parts.port
    except ValueError:
        return {}
    if not host:
        return {sc.SERVER_ADDRESS: parts.path} if parts.path else {}
    return {sc.SERVER_ADDRESS: host} | ({sc.SERVER_PORT: port} if port is not None else {})
