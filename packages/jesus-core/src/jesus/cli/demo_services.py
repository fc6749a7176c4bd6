"""The services `jesus demo` runs, one method per response mode on every installed channel.

`pricing` answers quotes, streams a ticker, acknowledges audits and counts log lines;
`orders` places orders by calling `pricing`, so the demo shows a nested call inheriting the
caller's corrid.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel

from jesus.messages import ResponseMode
from jesus.plugins import default_catalog
from jesus.runtime.context import current_call
from jesus.runtime.service import Service

QUOTE_REQUEST = {
    "type": "object",
    "properties": {
        "sku": {"type": "string", "minLength": 1},
        "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
    },
    "required": ["sku", "qty"],
    "additionalProperties": False,
}
QUOTE_RESPONSE = {
    "type": "object",
    "properties": {
        "sku": {"type": "string"},
        "total": {"type": "number"},
        "corrid": {"type": "string"},
    },
    "required": ["sku", "total", "corrid"],
}
PRICES = {"apple": 0.5, "pear": 0.75, "fig": 1.25}


def demo_channels() -> list[str]:
    """Two channels per installed transport: a lean binary one and a compressed JSON one."""
    channels = []
    for scheme in sorted(default_catalog().transports):
        channels += [f"{scheme}+msgpack+none", f"{scheme}+json+gzip"]
    return channels


def slug(channel: str) -> str:
    return channel.replace("+", "_")


def modes_of(channel: str) -> frozenset[ResponseMode]:
    transport = default_catalog().transports[channel.split("+")[0]]
    return frozenset(transport.modes)


def pricing() -> Service:
    svc = Service("pricing", version="1.0.0", description="quotes, a ticker, audits and logs")
    seen = {"audits": 0, "logs": 0, "orders placed": 0, "order events": 0}

    @svc.method(response={"type": "object"}, channel=demo_channels()[0])
    async def stats(data: Any) -> dict[str, int]:
        """How many audits, log lines and order events arrived."""
        return dict(seen)

    # Events on two channels: every order event over udp, placed orders (acked) over tcp.
    @svc.listener("order.*", channel=_first_channel("udp"))
    async def on_order_event(data: Any) -> None:
        seen["order events"] += 1

    @svc.listener(
        "order.placed",
        schema={"type": "object", "required": ["order"]},
        channel=_first_channel("tcp"),
    )
    async def on_order_placed(data: Any) -> None:
        seen["orders placed"] += 1

    for channel in demo_channels():
        s, modes = slug(channel), modes_of(channel)

        @svc.method(f"quote_{s}", request=QUOTE_REQUEST, response=QUOTE_RESPONSE, channel=channel)
        async def quote(data: dict[str, Any]) -> dict[str, Any]:
            """Price of qty units of sku."""
            meta = current_call()
            total = round(PRICES.get(data["sku"], 2.0) * data["qty"], 2)
            return {"sku": data["sku"], "total": total, "corrid": meta.corrid if meta else ""}

        if ResponseMode.STREAM in modes:

            @svc.method(
                f"ticker_{s}",
                request={
                    "type": "object",
                    "properties": {"n": {"type": "integer", "maximum": 100}},
                },
                response={"type": "object", "required": ["seq", "price"]},
                mode="stream",
                channel=channel,
            )
            async def ticker(data: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
                """n price ticks."""
                for seq in range(data.get("n", 5)):
                    await anyio.lowlevel.checkpoint()
                    yield {"seq": seq, "price": 0.5 + seq / 100}

        @svc.method(
            f"audit_{s}",
            request={"type": "object", "required": ["event"]},
            mode="ack",
            channel=channel,
        )
        async def audit(data: dict[str, Any]) -> None:
            """Record an audit event (acknowledged once accepted)."""
            seen["audits"] += 1

        @svc.method(
            f"log_{s}",
            request={"type": "object", "required": ["line"]},
            mode="noResponse",
            channel=channel,
        )
        async def log_line(data: dict[str, Any]) -> None:
            """Count a log line (fire and forget)."""
            seen["logs"] += 1

    return svc


def _first_channel(preferred: str) -> str:
    """A channel of the preferred transport if installed, else the first demo channel."""
    return next((c for c in demo_channels() if c.startswith(preferred + "+")), demo_channels()[0])


def orders() -> Service:
    svc = Service("orders", version="1.0.0", description="places orders priced by pricing")
    svc.emitter("order.placed", schema={"type": "object", "required": ["order"]}, mode="ack")
    counter = iter(range(1, 1_000_000))
    for channel in demo_channels():
        s = slug(channel)

        @svc.method(
            f"place_{s}", request=QUOTE_REQUEST, response={"type": "object"}, channel=channel
        )
        async def place(data: dict[str, Any], _s: str = s) -> dict[str, Any]:
            """Place an order: asks pricing over the same channel."""
            quote = await svc.call(f"pricing.quote_{_s}", data)
            meta = current_call()
            order = next(counter)
            await svc.emit("order.placed", {"order": order, "total": quote["total"]})
            return {
                "order": order,
                "total": quote["total"],
                "my_corrid": meta.corrid if meta else "",
                "pricing_corrid": quote["corrid"],
            }

    return svc
