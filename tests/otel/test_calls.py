"""Spans and metrics of calls over tcp, udp and http: one trace from the caller through a
nested call, the trace context (traceparent, tracestate, baggage) reaching the handler, and
errors as the RPC conventions record them."""

from __future__ import annotations

import itertools
from typing import Any

import anyio
import pytest
from opentelemetry import baggage, trace
from opentelemetry import context as otel_context
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    TraceState,
)

import jesus
from tests.helpers import wait_until
from tests.otel.conftest import Recorded

pytestmark = pytest.mark.anyio

CHANNELS = ["tcp+msgpack", "udp+msgpack", "http+json"]
REMOTE_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
REMOTE_SPAN = 0xB7AD6B7169203331


def front_and_back(
    channel: str, back_channel: str | None = None
) -> tuple[jesus.Service, jesus.Service, dict[str, Any]]:
    """front.relay calls back.add; back records the trace context it was called in."""
    front = jesus.Service("front", channel=channel)
    back = jesus.Service("back", channel=back_channel or channel)
    seen: dict[str, Any] = {}

    @front.method()
    async def relay(data: Any) -> Any:
        return await front.call("back.add", data)

    @back.method()
    async def add(data: dict[str, int]) -> int:
        meta = jesus.current_call()
        assert meta is not None
        seen["span"] = trace.get_current_span().get_span_context()
        seen["baggage"] = baggage.get_baggage("tenant")
        seen["meta"] = (meta.traceparent, dict(meta.extra or {}))
        return data["a"] + data["b"]

    return front, back, seen


def failing(channel: str = "tcp+msgpack") -> jesus.Service:
    svc = jesus.Service("calc", channel=channel)

    @svc.method()
    async def boom(data: Any) -> Any:
        raise ValueError("kaput")

    @svc.method(response={"type": "integer"})
    async def wrong(data: Any) -> Any:
        return "not an integer"

    @svc.method()
    async def sleep(data: float) -> str:
        await anyio.sleep(data)
        return "slept"

    return svc


def remote_parent() -> otel_context.Context:
    """A context as an incoming request from elsewhere would give: a remote span with a
    tracestate, and baggage."""
    remote = SpanContext(
        REMOTE_TRACE,
        REMOTE_SPAN,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
        trace_state=TraceState([("vendor", "opaque-7")]),
    )
    ctx = trace.set_span_in_context(NonRecordingSpan(remote))
    return baggage.set_baggage("tenant", "acme", ctx)


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_nested_call_is_one_trace_of_parents_and_children(
    running: Any, otel: Recorded, channel: str
) -> None:
    front, back, seen = front_and_back(channel)
    async with running(front, back) as (_, client):
        token = otel_context.attach(remote_parent())
        try:
            assert await client.call("front.relay", {"a": 2, "b": 40}) == 42
        finally:
            otel_context.detach(token)

    outer_client = otel.span("front/relay", SpanKind.CLIENT)
    outer_server = otel.span("front/relay", SpanKind.SERVER)
    inner_client = otel.span("back/add", SpanKind.CLIENT)
    inner_server = otel.span("back/add", SpanKind.SERVER)
    chain = [outer_client, outer_server, inner_client, inner_server]
    assert {s.context.trace_id for s in chain} == {REMOTE_TRACE}
    assert outer_client.parent is not None and outer_client.parent.span_id == REMOTE_SPAN
    for parent, child in itertools.pairwise(chain):
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
    assert outer_server.parent is not None and outer_server.parent.is_remote

    for span in chain:
        assert span.attributes is not None
        assert span.attributes["rpc.system.name"] == "jesus"
        assert span.attributes["rpc.status_code"] == "OK"
        assert span.status.status_code is StatusCode.UNSET
        assert span.attributes["jesus.channel"].startswith(channel)
    assert inner_client.attributes is not None and outer_client.attributes is not None
    assert inner_client.attributes["rpc.method"] == "back/add"
    assert inner_client.attributes["server.address"] == "127.0.0.1"
    assert isinstance(inner_client.attributes["server.port"], int)
    assert outer_client.attributes["jesus.corrid"] == inner_client.attributes["jesus.corrid"]

    # The handler ran in its server span, with the caller's baggage and tracestate.
    assert seen["span"].span_id == inner_server.context.span_id
    assert seen["baggage"] == "acme"
    assert seen["span"].trace_state.get("vendor") == "opaque-7"
    traceparent, extra = seen["meta"]
    assert traceparent == f"00-{REMOTE_TRACE:032x}-{inner_server.context.span_id:016x}-01"
    assert extra["tracestate"] == "vendor=opaque-7" and extra["baggage"] == "tenant=acme"

    for side in ("client", "server"):
        for method in ("front/relay", "back/add"):
            attributes = {"rpc.method": method, "rpc.status_code": "OK"}
            point = otel.point(f"rpc.{side}.call.duration", attributes)
            assert point.count == 1 and point.sum > 0
            assert point.attributes["rpc.system.name"] == "jesus"
            active = otel.point(f"jesus.{side}.active_calls", {"rpc.method": method})
            assert active.value == 0  # back to none once the calls ended
    # The bytes are the process's since it started: other tests' calls to back/add count too.
    wanted = {"rpc.method": "back/add", "jesus.channel": f"{channel}+none"}
    assert otel.point("jesus.server.request.size", wanted).value > 0
    assert otel.points("jesus.client.errors") == []


@pytest.mark.parametrize("channel", CHANNELS)
async def test_errors_set_the_status_and_are_counted_by_code(
    running: Any, otel: Recorded, channel: str
) -> None:
    async with running(failing(channel)) as (_, client):
        with pytest.raises(jesus.RemoteFailure):
            await client.call("calc.boom")
        with pytest.raises(jesus.InvalidResponse):
            await client.call("calc.wrong")

    for kind in (SpanKind.CLIENT, SpanKind.SERVER):
        span = otel.span("calc/boom", kind)
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["rpc.status_code"] == "REMOTE_FAILURE"
        assert span.attributes["error.type"] == "REMOTE_FAILURE"
        wrong = otel.span("calc/wrong", kind)
        assert wrong.attributes is not None
        assert wrong.attributes["error.type"] == "INVALID_RESPONSE"
        assert wrong.status.status_code is StatusCode.ERROR
    server_boom = otel.span("calc/boom", SpanKind.SERVER)
    assert server_boom.status.description == "kaput"
    assert [e.name for e in server_boom.events] == ["exception"]  # the handler's own

    for side in ("client", "server"):
        for method, code in (("calc/boom", "REMOTE_FAILURE"), ("calc/wrong", "INVALID_RESPONSE")):
            errors = otel.point(f"jesus.{side}.errors", {"rpc.method": method})
            assert errors.value == 1 and errors.attributes["error.type"] == code
            duration = otel.point(f"rpc.{side}.call.duration", {"rpc.method": method})
            assert duration.attributes["rpc.status_code"] == code


async def test_a_call_that_runs_past_its_deadline(running: Any, otel: Recorded) -> None:
    async with running(failing()) as (_, client):
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("calc.sleep", 5.0, timeout=0.2)
        await _server_span_ended(otel, "calc/sleep")
        # Nobody waits for a noResponse call: it is the server's deadline that stops it.
        await client.notify("calc.sleep", 6.0, timeout=0.2)
        await wait_until(lambda: len(otel.spans("calc/sleep")) == 4)
    client_span, notified = (s for s in otel.spans("calc/sleep") if s.kind == SpanKind.CLIENT)
    assert client_span.attributes is not None and notified.attributes is not None
    assert client_span.attributes["error.type"] == "DEADLINE_EXCEEDED"
    assert notified.attributes["rpc.status_code"] == "OK"  # sent: all a noResponse call is
    served, stopped = (s for s in otel.spans("calc/sleep") if s.kind == SpanKind.SERVER)
    assert served.attributes is not None and stopped.attributes is not None
    # The first was cut off by its caller leaving at its deadline or by its own deadline,
    # whichever the server saw first; the second only by its deadline.
    assert served.attributes["rpc.status_code"] in ("CANCELLED", "DEADLINE_EXCEEDED")
    assert stopped.attributes["error.type"] == "DEADLINE_EXCEEDED"
    assert stopped.status.status_code is StatusCode.ERROR


async def _server_span_ended(otel: Recorded, name: str) -> None:
    await wait_until(lambda: any(s.kind == SpanKind.SERVER for s in otel.spans(name)))
