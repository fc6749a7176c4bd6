"""`jesus docs`: OpenAPI 3.1, AsyncAPI 3.0 and markdown from the services' declarations."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi

import jesus
from jesus.contracts import from_records, from_services
from jesus.contracts.asyncapi import asyncapi
from jesus.contracts.graph import mermaid
from jesus.contracts.markdown import markdown
from jesus.contracts.openapi import openapi
from jesus.messages import ResponseMode
from jesus.registry.base import InstanceRecord, MethodRecord
from tests.contracts import system
from tests.contracts.documents import asyncapi_errors, dangling_refs


@pytest.fixture
def contracts() -> list[Any]:
    return from_services(system.build())


def _deref(doc: Any, value: Any) -> Any:
    while isinstance(value, dict) and "$ref" in value:
        node = doc
        for part in value["$ref"][2:].split("/"):
            node = node[part]
        value = node
    return value


def test_openapi_is_valid_and_holds_only_what_http_serves(contracts: list[Any]) -> None:
    doc = openapi(contracts)
    validate_openapi(doc)
    assert doc["openapi"] == "3.1.0"
    assert dangling_refs(doc) == []
    # shop.log and billing.invoice are tcp only; the audit listener is on http.
    assert set(doc["paths"]) == {
        "/shop/order",
        "/shop/catalog",
        "/shop/cancel",
        "/audit/~order.created",
    }
    order = doc["paths"]["/shop/order"]["post"]
    assert order["operationId"] == "shop.order"
    assert order["summary"] == "Place an order for one item."
    assert order["x-jesus-mode"] == "response"
    assert order["x-jesus-channels"] == ["http+json+none", "tcp+msgpack+none"]
    assert list(order["requestBody"]["content"]) == ["application/json", "application/msgpack"]
    ok = order["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "application/msgpack"}
    assert _deref(doc, ok["content"]["application/json"]["schema"]) == system.ORDER
    headers = {_deref(doc, p)["name"] for p in order["parameters"]}
    assert {"x-jesus-corrid", "x-jesus-deadline-ms", "traceparent", "x-jesus-mode"} <= headers
    assert "x-jesus-event" not in headers


def test_openapi_statuses_follow_the_error_codes(contracts: list[Any]) -> None:
    doc = openapi(contracts)
    responses = doc["paths"]["/shop/order"]["post"]["responses"]
    assert {"400", "403", "404", "413", "421", "499", "500", "503", "504"} <= set(responses)
    misdirected = _deref(doc, responses["421"])
    assert "WRONG_CHANNEL" in misdirected["description"]
    assert "x-jesus-error" in misdirected["headers"]
    unavailable = _deref(doc, responses["503"])
    assert "UNAVAILABLE" in unavailable["description"]


def test_openapi_describes_streams_acks_and_listeners(contracts: list[Any]) -> None:
    doc = openapi(contracts)
    stream = doc["paths"]["/shop/catalog"]["post"]["responses"]["200"]
    # the declared codec first; the server answers either
    assert list(stream["content"]) == [
        "application/x-jesus-msgpack-stream",
        "application/x-ndjson",
    ]
    assert stream["x-jesus-stream"]["framing"] == {
        "application/x-jesus-msgpack-stream": "u32be-length-prefixed",
        "application/x-ndjson": "ndjson",
    }
    assert "4-byte big-endian" in stream["description"]
    element = _deref(doc, stream["content"]["application/x-ndjson"]["schema"])
    item, error = element["oneOf"]
    assert item["required"] == ["item"] and error == {"$ref": "#/components/schemas/Error"}
    # the item schema keeps its own $defs reachable once embedded
    item_schema = _deref(doc, item["properties"]["item"])
    sku = item_schema["properties"]["sku"]["$ref"]
    assert sku == "#/components/schemas/shop.catalog.response/$defs/sku"
    assert "$schema" not in item_schema
    jsonschema.validate({"sku": "ABC-1", "qty": 2}, _inline(doc, item_schema))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"sku": "nope", "qty": 2}, _inline(doc, item_schema))

    cancel = doc["paths"]["/shop/cancel"]["post"]["responses"]
    assert "200" not in cancel
    assert _deref(doc, cancel["202"]["content"]["application/json"]["schema"])["required"] == [
        "accepted",
        "corrid",
    ]
    listener = doc["paths"]["/audit/~order.created"]["post"]
    first = _deref(doc, listener["parameters"][0])
    assert first["name"] == "x-jesus-event" and first["required"] is True


def _inline(doc: dict[str, Any], schema: Any) -> Any:
    """`schema` with the document around it, so its relocated refs resolve."""
    return {**schema, "components": doc["components"]}


def test_asyncapi_is_valid_and_has_every_method_and_event(contracts: list[Any]) -> None:
    doc = asyncapi(contracts)
    assert asyncapi_errors(doc) == []
    assert dangling_refs(doc) == []
    ops = doc["operations"]
    for target in ("shop.order", "shop.catalog", "shop.cancel", "shop.log", "billing.invoice"):
        assert ops[target]["action"] == "receive"
        assert doc["channels"][target]["address"] == target
    assert doc["channels"]["shop.log"]["x-jesus-channels"] == ["tcp+msgpack+none"]
    assert doc["channels"]["shop.catalog"]["messages"]["item"]["contentType"] == (
        "application/msgpack"
    )

    def replies(target: str) -> list[str] | None:
        reply = ops[target].get("reply")
        return None if reply is None else [m["$ref"].rsplit("/", 1)[1] for m in reply["messages"]]

    assert replies("shop.order") == ["response", "error"]
    assert replies("shop.catalog") == ["item", "end", "error"]
    assert replies("shop.cancel") == ["ack", "error"]
    assert replies("shop.log") is None

    created = doc["channels"]["event.order.created"]
    assert created["address"] == "order.created"
    assert set(created["messages"]) == {"shop.emits", "audit.listens"}
    assert ops["shop.emits.event.order.created"]["action"] == "send"
    assert ops["shop.emits.event.order.cancelled"]["x-jesus-mode"] == "ack"
    listens = ops["audit.listens.event.order.created"]
    assert listens["action"] == "receive" and listens["x-jesus-group"] == "auditors"
    assert doc["channels"]["pattern.order"]["address"] == "order.*"
    assert ops["billing.listens.pattern.order"]["x-jesus-channels"] == ["tcp+msgpack+none"]


def test_the_asyncapi_schema_refuses_a_broken_document(contracts: list[Any]) -> None:
    doc = copy.deepcopy(asyncapi(contracts))
    del doc["operations"]["shop.order"]["action"]
    doc["channels"]["shop.log"]["address"] = 42
    errors = asyncapi_errors(doc)
    assert errors and any("operations" in e for e in errors), errors
    doc = asyncapi(contracts)
    doc["operations"]["shop.log"]["channel"] = {"$ref": "#/channels/nowhere"}
    assert dangling_refs(doc) == ["#/channels/nowhere"]


def test_openapi_validator_refuses_a_broken_document(contracts: list[Any]) -> None:
    doc = openapi(contracts)
    doc["paths"]["/shop/order"]["post"]["responses"]["200"]["content"] = "json"
    with pytest.raises(Exception, match="json"):
        validate_openapi(doc)


def test_markdown_page_per_service(contracts: list[Any]) -> None:
    page = markdown(contracts)
    assert page.index("# shop 2.1.0") < page.index("# billing 1.0.0") < page.index("# audit")
    assert "| `shop.catalog` | stream | `http+msgpack+none` |  |" in page
    assert "### shop.order\n\nPlace an order for one item.\n\nReturns the order's id." in page
    assert "| `order.cancelled` | ack |" in page
    assert "| `order.created` | auditors | `http+json+none` |" in page
    assert "- `shop.order`" in page  # billing uses it
    assert '"pattern": "^[A-Z]{3}-[0-9]+$"' in page
    assert "Data: any value." in page  # audit's listener takes anything


def test_sealed_methods_say_so() -> None:
    vault = jesus.Service("vault", channel="http+json")

    @vault.method(seal="encrypt", request={"type": "string"})
    async def put(data: str) -> None: ...

    doc = openapi(from_services([vault]))
    validate_openapi(doc)
    op = doc["paths"]["/vault/put"]["post"]
    assert op["x-jesus-seal"] == "encrypt"
    assert op["description"].startswith("Sealed (encrypt): the body is a sealed request")
    assert asyncapi(from_services([vault]))["operations"]["vault.put"]["x-jesus-seal"] == "encrypt"


def _instance(service: str, version: str, endpoints: dict[str, str]) -> InstanceRecord:
    method = MethodRecord(request=True, response=True, mode=ResponseMode.RESPONSE, channel="http")
    return InstanceRecord(
        service=service,
        version=version,
        instance_id=f"{service}-{version}",
        endpoints=endpoints,
        methods={f"v{version.replace('.', '_')}": method},
    )


def test_from_records_describes_the_newest_version_where_it_runs() -> None:
    records = [
        _instance("a", "1.9.2", {"http": "http://127.0.0.1:1"}),
        _instance("a", "1.10.0", {"http": "http://127.0.0.1:2", "tcp": "tcp://127.0.0.1:3"}),
        _instance("b", "0.1.0", {"http": "https://127.0.0.1:4"}),
    ]
    a, b = from_records(records)
    assert (a.service, a.version, a.other_versions) == ("a", "1.10.0", ("1.9.2",))
    assert a.endpoints == ("http://127.0.0.1:2", "tcp://127.0.0.1:3")
    doc = openapi([a, b])
    validate_openapi(doc)
    assert set(doc["paths"]) == {"/a/v1_10_0", "/b/v0_1_0"}
    assert doc["servers"] == [{"url": "http://127.0.0.1:2"}, {"url": "https://127.0.0.1:4"}]
    assert doc["paths"]["/a/v1_10_0"]["servers"] == [{"url": "http://127.0.0.1:2"}]
    assert doc["paths"]["/b/v0_1_0"]["servers"] == [{"url": "https://127.0.0.1:4"}]
    assert doc["tags"][0]["description"] == "a 1.10.0 (also running: 1.9.2)"
    events = asyncapi([a, b])
    assert asyncapi_errors(events) == []
    assert events["servers"]["a-tcp-1"] == {
        "host": "127.0.0.1:3",
        "protocol": "tcp",
        "title": "a over tcp",
    }


def test_the_documented_graph_is_the_drawn_one(contracts: list[Any]) -> None:
    text = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text()
    (drawn,) = re.findall(r"```mermaid\n(.*?)```", text, re.S)
    assert drawn == mermaid(contracts)


def test_openapi_without_the_http_transport_says_what_to_install(
    contracts: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jesus_http", None)  # as if not installed
    with pytest.raises(jesus.ConfigurationError, match=r"pip install 'jesus-core\[http\]'"):
        openapi(contracts)
    assert asyncapi_errors(asyncapi(contracts)) == []  # AsyncAPI needs no transport
