"""A stream's spans last as long as the stream: to its end, to the consumer leaving the loop,
or to its cancellation; over tcp and http (udp carries no stream)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

import jesus
from tests.helpers import wait_until
from tests.helpers.services import calculator
from tests.otel.conftest import Recorded

pytestmark = pytest.mark.anyio

CHANNELS = ["tcp+msgpack", "http+json"]


def both_ended(otel: Recorded, name: str, count: int = 1) -> bool:
    return len(otel.spans(name)) == 2 * count


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_whole_stream_is_one_span_each_side(
    running: Any, otel: Recorded, channel: str
) -> None:
    svc, _ = calculator(channel)
    seen: list[int] = []

    @svc.method(mode="stream")
    async def spans(data: int) -> Any:
        for _ in range(data):
            seen.append(trace.get_current_span().get_span_context().span_id)
            yield len(seen)

    async with running(svc) as (_, client):
        assert [i async for i in client.stream("calc.count", {"n": 3})] == [0, 1, 2]
        assert [i async for i in client.stream("calc.spans", 3)] == [1, 2, 3]
        await wait_until(lambda: both_ended(otel, "calc/spans"))
    client_span = otel.span("calc/count", SpanKind.CLIENT)
    server_span = otel.span("calc/count", SpanKind.SERVER)
    assert server_span.parent is not None
    assert server_span.parent.span_id == client_span.context.span_id
    for span in (client_span, server_span):
        assert span.attributes is not None and span.attributes["rpc.status_code"] == "OK"
        assert span.attributes["jesus.mode"] == "stream"
    # The handler runs in its span's context for every item, not only the first.
    handler_span = otel.span("calc/spans", SpanKind.SERVER)
    assert seen == [handler_span.context.span_id] * 3
    assert otel.point("jesus.server.active_calls", {"rpc.method": "calc/count"}).value == 0


@pytest.mark.parametrize("channel", CHANNELS)
async def test_leaving_the_loop_ends_the_stream_spans(
    running: Any, otel: Recorded, channel: str
) -> None:
    svc, state = calculator(channel)
    async with running(svc) as (_, client):
        async for item in client.stream("calc.count", {"n": 100_000, "delay": 0.001}):
            if item == 5:
                break
        await wait_until(lambda: both_ended(otel, "calc/count"))
        assert state["produced"] < 100_000
        assert otel.point("jesus.client.active_calls", {"rpc.method": "calc/count"}).value == 0
        await wait_until(
            lambda: otel.point("jesus.server.active_calls", {"rpc.method": "calc/count"}).value == 0
        )
    for kind in (SpanKind.CLIENT, SpanKind.SERVER):
        span = otel.span("calc/count", kind)
        assert span.attributes is not None
        assert span.attributes["rpc.status_code"] == "CANCELLED", kind
        assert "error.type" not in span.attributes  # the consumer chose to leave
        assert span.status.status_code is StatusCode.UNSET
    assert otel.points("jesus.client.errors") == []


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_cancelled_or_failed_stream_ends_its_spans(
    running: Any, otel: Recorded, channel: str
) -> None:
    svc, _ = calculator(channel)
    async with running(svc) as (_, client):
        with anyio.CancelScope() as scope:
            async for item in client.stream("calc.count", {"n": 100_000, "delay": 0.01}):
                if item == 3:
                    scope.cancel()  # the loop is cancelled at its next wait for an item
        assert scope.cancelled_caught
        await wait_until(lambda: both_ended(otel, "calc/count"))
        with pytest.raises(jesus.DeadlineExceeded):
            async for _ in client.stream("calc.count", {"n": 100_000, "delay": 0.01}, timeout=0.2):
                pass
        await wait_until(lambda: both_ended(otel, "calc/count", 2))
        with pytest.raises(jesus.RemoteFailure):
            async for _ in client.stream("calc.count", {"n": 2, "fail": True}):
                pass
        await wait_until(lambda: both_ended(otel, "calc/count", 3))
    clients = [s for s in otel.spans("calc/count") if s.kind == SpanKind.CLIENT]
    codes = [s.attributes["rpc.status_code"] for s in clients if s.attributes]
    assert codes == ["CANCELLED", "DEADLINE_EXCEEDED", "REMOTE_FAILURE"]
    assert clients[1].status.status_code is StatusCode.ERROR
    assert clients[2].status.status_code is StatusCode.ERROR
    failed = [s for s in otel.spans("calc/count") if s.kind == SpanKind.SERVER][-1]
    assert failed.attributes is not None and failed.attributes["error.type"] == "REMOTE_FAILURE"
    assert failed.status.description == "stream broke midway"
