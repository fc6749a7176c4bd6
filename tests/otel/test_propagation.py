"""The trace context travels in the meta with no SDK configured too: an HTTP caller's
traceparent, tracestate and baggage reach a handler two hops on, over http then tcp, as they
were sent. And the http mapping carries them, and only well-formed, as headers."""

from __future__ import annotations

from typing import Any

import pytest

from jesus_http import mapping
from jesus_otel import TELEMETRY
from tests.http.test_http import JSON, curl
from tests.otel.test_calls import front_and_back

pytestmark = pytest.mark.anyio

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACESTATE = "vendor=opaque-7,other=x"
BAGGAGE = "tenant=acme,region=eu"


async def test_with_no_sdk_the_context_passes_through_untouched(running: Any, no_sdk: None) -> None:
    assert TELEMETRY.recording() is None
    front, back, seen = front_and_back("http+json", "tcp+msgpack")
    async with running(front, back) as (node, _):
        url = node.endpoints["http"]
        status, _, body = await curl(
            *JSON,
            *("-H", f"traceparent: {TRACEPARENT}"),
            *("-H", f"tracestate: {TRACESTATE}"),
            *("-H", f"baggage: {BAGGAGE}"),
            "-d",
            '{"a": 1, "b": 2}',
            f"{url}/front/relay",
        )
    assert status == 200 and body == b"3"
    traceparent, extra = seen["meta"]
    assert traceparent == TRACEPARENT
    assert extra == {"tracestate": TRACESTATE, "baggage": BAGGAGE}


def test_the_http_mapping_carries_tracestate_and_baggage() -> None:
    meta = mapping.meta_from_headers(
        {"traceparent": TRACEPARENT, "tracestate": TRACESTATE, "baggage": BAGGAGE}
    )
    assert meta == {"t": TRACEPARENT, "x": {"tracestate": TRACESTATE, "baggage": BAGGAGE}}
    assert mapping.meta_from_headers({"traceparent": TRACEPARENT}) == {"t": TRACEPARENT}
    headers = _headers(mapping.meta_header_lines({"c": "id", **meta}))
    assert headers["tracestate"] == TRACESTATE and headers["baggage"] == BAGGAGE
    # From another transport's peer, a value that would break the head is not sent.
    forged = {"c": "id", "x": {"tracestate": "a=b\r\nx-evil: 1", "baggage": 7, "auth": "t"}}
    assert list(_headers(mapping.meta_header_lines(forged))) == ["x-jesus-corrid"]


def _headers(lines: str) -> dict[str, str]:
    assert lines.endswith("\r\n")
    return dict(line.split(": ", 1) for line in lines.split("\r\n") if line)
