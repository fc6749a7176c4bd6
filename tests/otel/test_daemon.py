"""Through the node daemon: a local process that sends a traceparent, tracestate and baggage
(no SDK of its own) gets one trace from the daemon's relay to the handler, and with no SDK
anywhere they reach the handler as sent."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from opentelemetry.trace import SpanKind

import jesus
from jesus.messages import ResponseMode
from jesus_daemon import run_daemon
from tests.daemon.local import LocalProcess
from tests.otel.conftest import Recorded
from tests.otel.test_calls import REMOTE_SPAN, REMOTE_TRACE, front_and_back
from tests.otel.test_propagation import BAGGAGE, TRACEPARENT, TRACESTATE

pytestmark = pytest.mark.anyio
SENT = {"t": TRACEPARENT, "x": {"tracestate": TRACESTATE, "baggage": BAGGAGE}}


@pytest.fixture
def socket_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="jd-", dir="/tmp")  # a unix socket path has 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@asynccontextmanager
async def through_daemon(
    registry: str, socket_dir: str, *services: jesus.Service
) -> AsyncIterator[LocalProcess]:
    socket = os.path.join(socket_dir, "jesus.sock")
    async with (
        jesus.serve(*services, registry=registry),
        run_daemon(socket, registry=registry),
        LocalProcess(socket) as local,
    ):
        yield local


async def test_the_daemons_relay_continues_the_callers_trace(
    registry: str, socket_dir: str, otel: Recorded
) -> None:
    _, back, seen = front_and_back("tcp+msgpack")
    async with through_daemon(registry, socket_dir, back) as local:
        assert await local.call("back.add", {"a": 1, "b": 2}, ResponseMode.RESPONSE, **SENT) == 3
    relayed = otel.span("back/add", SpanKind.CLIENT)  # the daemon's call on to the service
    served = otel.span("back/add", SpanKind.SERVER)
    assert relayed.context.trace_id == served.context.trace_id == REMOTE_TRACE
    assert relayed.parent is not None and relayed.parent.span_id == REMOTE_SPAN
    assert served.parent is not None and served.parent.span_id == relayed.context.span_id
    assert seen["baggage"] == "acme"
    assert seen["span"].trace_state.get("vendor") == "opaque-7"


async def test_with_no_sdk_the_daemon_passes_the_context_on(
    registry: str, socket_dir: str, no_sdk: None
) -> None:
    _, back, seen = front_and_back("tcp+msgpack")
    async with through_daemon(registry, socket_dir, back) as local:
        assert await local.call("back.add", {"a": 1, "b": 2}, ResponseMode.RESPONSE, **SENT) == 3
    assert seen["meta"] == (TRACEPARENT, SENT["x"])
