"""A small system for the contract and graph tests: a shop served over http and tcp, a
billing service that uses it and listens to its events, an audit log listening on http."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jesus

ITEM = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"}},
    "type": "object",
    "properties": {"sku": {"$ref": "#/$defs/sku"}, "qty": {"type": "integer", "minimum": 1}},
    "required": ["sku", "qty"],
    "additionalProperties": False,
}
ORDER = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}


def build() -> list[jesus.Service]:
    shop = jesus.Service("shop", version="2.1.0", channel="tcp+msgpack")
    billing = jesus.Service("billing", version="1.0.0", channel="tcp+msgpack")
    audit = jesus.Service("audit", version="0.3.0", channel="http+json")

    @shop.method(request=ITEM, response=ORDER, channel=["http+json", "tcp+msgpack"])
    async def order(data: dict[str, Any]) -> dict[str, int]:
        """Place an order for one item.

        Returns the order's id."""
        await shop.emit("order.created", {"id": 7})
        return {"id": 7}

    @shop.method(mode="stream", request={"type": "integer"}, response=ITEM, channel="http+msgpack")
    async def catalog(data: int) -> AsyncIterator[dict[str, Any]]:
        for n in range(data):
            yield {"sku": f"ABC-{n}", "qty": 1}

    @shop.method(mode="ack", request=ORDER, channel="http+json")
    async def cancel(data: dict[str, int]) -> None: ...

    @shop.method(mode="noResponse", request={"type": "string"})
    async def log(data: str) -> None: ...

    shop.emitter("order.created", schema=ORDER)
    shop.emitter("order.cancelled", schema=ORDER, mode="ack")

    @billing.method(request=ORDER, response={"type": "number"})
    async def invoice(data: dict[str, int]) -> float:
        return 9.5

    billing.use("shop.order", request=ITEM, response=ORDER)

    @billing.listener("order.*", schema=ORDER)
    async def on_order(data: dict[str, int]) -> None: ...

    @audit.listener("order.created", schema=True, group="auditors")
    async def record(data: Any) -> None: ...

    return [shop, billing, audit]


services = build
