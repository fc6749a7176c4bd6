"""Services the tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio

import jesus

ADD_REQUEST = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}


def calculator(
    channel: str = "tcp+msgpack", name: str = "calc"
) -> tuple[jesus.Service, dict[str, Any]]:
    """A service with one method per mode; `state` records what handlers saw."""
    svc = jesus.Service(name, channel=channel)
    state: dict[str, Any] = {
        "acked": [],
        "notified": [],
        "cancelled": 0,
        "produced": 0,
        "event": anyio.Event(),
        "corrids": [],
    }

    @svc.method(request=ADD_REQUEST, response={"type": "integer"})
    async def add(data: dict[str, int]) -> int:
        meta = jesus.current_call()
        state["corrids"].append(meta.corrid if meta else None)
        return data["a"] + data["b"]

    @svc.method(response={"type": "integer"})
    async def wrong(data: Any) -> Any:
        return "not an integer"

    @svc.method()
    async def boom(data: Any) -> Any:
        raise ValueError("kaput")

    @svc.method()
    async def echo(data: Any) -> Any:
        return data

    @svc.method()
    async def sleep(data: float) -> str:
        try:
            await anyio.sleep(data)
        except BaseException:
            state["cancelled"] += 1
            raise
        return "slept"

    @svc.method(mode="ack")
    async def record(data: Any) -> None:
        state["acked"].append(data)
        state["event"].set()

    @svc.method(mode="noResponse")
    async def fire(data: Any) -> None:
        state["notified"].append(data)
        state["event"].set()

    @svc.method(mode="stream", response={"type": "integer"})
    async def count(data: dict[str, int]) -> AsyncIterator[int]:
        try:
            for i in range(data["n"]):
                state["produced"] = i + 1
                yield i
                if data.get("delay"):
                    await anyio.sleep(data["delay"])
            if data.get("fail"):
                raise RuntimeError("stream broke midway")
        except BaseException:
            state["cancelled"] += 1
            raise

    return svc, state
