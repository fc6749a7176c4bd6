"""A user's own tests see the spans too: jesus.testing.TestClient serves in memory through the
same call runner and middleware."""

from __future__ import annotations

import pytest
from opentelemetry.trace import SpanKind

from jesus.testing import TestClient
from tests.otel.conftest import Recorded
from tests.otel.test_calls import front_and_back

pytestmark = pytest.mark.anyio


async def test_spans_of_a_nested_call_in_memory(otel: Recorded) -> None:
    front, back, _ = front_and_back("tcp+msgpack")
    async with TestClient(front, back) as client:
        assert await client.call("front.relay", {"a": 1, "b": 2}) == 3
    outer = otel.span("front/relay", SpanKind.SERVER)
    inner = otel.span("back/add", SpanKind.CLIENT)
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id
    assert {s.context.trace_id for s in otel.spans()} == {outer.context.trace_id}
    assert len(otel.spans()) == 4
