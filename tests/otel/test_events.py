"""Events by the messaging conventions: a publish span per delivery (one per listener group)
and a process span at the listener, its child and linked to it, in one trace; over tcp, udp
and http."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import jesus
from tests.helpers import wait_until
from tests.otel.conftest import Recorded

pytestmark = pytest.mark.anyio

CHANNELS = ["tcp+msgpack", "udp+msgpack", "http+json"]


def shop(channel: str) -> tuple[jesus.Service, jesus.Service, jesus.Service, list[Any]]:
    """orders.place emits order.placed; billing listens to order.*, mail to order.placed
    (group "mailers"); mail's listener fails for a refund."""
    orders = jesus.Service("orders", channel=channel)
    billing = jesus.Service("billing", channel=channel)
    mail = jesus.Service("mail", channel=channel)
    got: list[Any] = []

    @orders.method()
    async def place(data: Any) -> Any:
        return await orders.emit("order.placed", data, mode="ack")

    @billing.listener("order.*")
    async def bill(data: Any) -> None:
        got.append(("billing", data))

    @mail.listener("order.placed", group="mailers")
    async def send(data: Any) -> None:
        if data == "refund":
            raise RuntimeError("no mail for refunds")
        got.append(("mail", data))

    return orders, billing, mail, got


@pytest.mark.parametrize("channel", CHANNELS)
async def test_an_emit_from_a_handler_is_one_trace(
    running: Any, otel: Recorded, channel: str
) -> None:
    orders, billing, mail, got = shop(channel)
    async with running(orders, billing, mail) as (_, client):
        assert sorted(await client.call("orders.place", "book")) == ["billing", "mailers"]
        await wait_until(lambda: len(otel.spans()) == 6)
    assert sorted(got) == [("billing", "book"), ("mail", "book")]

    place = otel.span("orders/place", SpanKind.SERVER)
    publishes = otel.spans("publish order.placed")
    assert len(publishes) == 2
    by_group = {s.attributes["messaging.consumer.group.name"]: s for s in publishes if s.attributes}
    assert set(by_group) == {"billing", "mailers"}
    processes = {
        "billing": otel.span("process order.*"),
        "mailers": otel.span("process order.placed"),
    }
    trace_ids = {s.context.trace_id for s in otel.spans()}
    assert len(trace_ids) == 1  # the caller's, through the handler and every delivery

    for group, publish in by_group.items():
        assert publish.kind == SpanKind.PRODUCER
        assert publish.parent is not None and publish.parent.span_id == place.context.span_id
        assert publish.attributes is not None
        assert publish.attributes["messaging.system"] == "jesus"
        assert publish.attributes["messaging.operation.type"] == "send"
        assert publish.attributes["messaging.operation.name"] == "publish"
        assert publish.attributes["messaging.destination.name"] == "order.placed"
        assert publish.attributes["server.address"] == "127.0.0.1"
        process = processes[group]
        assert process.kind == SpanKind.CONSUMER
        assert process.parent is not None
        assert process.parent.span_id == publish.context.span_id
        assert [link.context.span_id for link in process.links] == [publish.context.span_id]
        assert process.attributes is not None
        assert process.attributes["messaging.operation.type"] == "process"
        assert process.attributes["messaging.destination.name"] == "order.placed"
        assert process.attributes["messaging.consumer.group.name"] == group
        assert process.attributes["jesus.channel"].startswith(channel)
        corrid = process.attributes["messaging.message.conversation_id"]
        assert corrid == publish.attributes["messaging.message.conversation_id"]
    assert processes["billing"].attributes is not None
    assert processes["billing"].attributes["messaging.destination.template"] == "order.*"

    sent = otel.point(
        "messaging.client.sent.messages", {"messaging.consumer.group.name": "mailers"}
    )
    assert sent.value == 1 and sent.attributes["messaging.destination.name"] == "order.placed"
    handled = otel.point("messaging.process.duration", {"messaging.consumer.group.name": "billing"})
    assert handled.count == 1
    consumed = otel.point(
        "messaging.client.consumed.messages", {"messaging.consumer.group.name": "billing"}
    )
    assert consumed.value == 1
    assert otel.points("rpc.server.call.duration")[0].attributes["rpc.method"] == "orders/place"


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_top_level_emit_and_a_failing_listener(
    running: Any, otel: Recorded, channel: str
) -> None:
    _, _, mail, _ = shop(channel)
    async with running(mail) as (_, client):
        assert await client.emit("order.placed", "book", mode="ack") == ["mailers"]
        # Acked once accepted, before the listener runs: only the listener's span fails.
        assert await client.emit("order.placed", "refund", mode="ack") == ["mailers"]
        await wait_until(lambda: len(otel.spans()) == 4)
    ok_publish, acked_publish = otel.spans("publish order.placed")
    ok_process, bad_process = otel.spans("process order.placed")
    assert ok_process.context.trace_id == ok_publish.context.trace_id
    assert ok_process.parent is not None and ok_process.parent.span_id == ok_publish.context.span_id
    assert ok_publish.parent is None  # nothing around the emit: the delivery starts the trace
    assert bad_process.context.trace_id == acked_publish.context.trace_id
    assert bad_process.context.trace_id != ok_process.context.trace_id
    assert acked_publish.status.status_code is StatusCode.UNSET
    assert bad_process.status.status_code is StatusCode.ERROR
    assert bad_process.status.description == "no mail for refunds"
    assert bad_process.attributes is not None
    assert bad_process.attributes["error.type"] == "REMOTE_FAILURE"
    assert "rpc.status_code" not in bad_process.attributes  # a messaging span, not an RPC one
    errors = otel.point("jesus.server.errors", {"messaging.destination.name": "order.placed"})
    assert errors.value == 1 and errors.attributes["messaging.consumer.group.name"] == "mailers"
    failed = otel.point("messaging.process.duration", {"error.type": "REMOTE_FAILURE"})
    assert failed.count == 1
    assert otel.point("messaging.client.sent.messages", {}).value == 2
