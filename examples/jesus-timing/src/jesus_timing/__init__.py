"""An example jesus plugin: times every call on both ends, and adds an `ascii85` codec.

Install it next to jesus (`pip install -e examples/jesus-timing`) and `jesus plugins` lists it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import jesus


class Timing(jesus.Middleware):
    """Keeps the duration of the last calls per method, on the client and the server side."""

    name = "timing"

    def __init__(self) -> None:
        self.durations: dict[tuple[str, str], list[float]] = {}

    async def client(self, call: jesus.CallInfo, call_next: Any) -> Any:
        return await self._timed("client", call, call_next)

    async def server(self, call: jesus.CallInfo, call_next: Any) -> Any:
        return await self._timed("server", call, call_next)

    async def _timed(self, side: str, call: jesus.CallInfo, call_next: Any) -> Any:
        started = time.perf_counter()
        try:
            return await call_next(call)
        finally:
            samples = self.durations.setdefault((side, f"{call.service}.{call.method}"), [])
            samples.append(time.perf_counter() - started)
            del samples[:-1000]


class Ascii85Codec:
    """JSON wrapped in ascii85: only useful as an example of a codec plugin."""

    name = "ascii85"
    content_type = "application/x-jesus-ascii85"

    def encode(self, value: Any) -> bytes:
        return base64.a85encode(json.dumps(value).encode())

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(base64.a85decode(data))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"invalid ascii85 JSON: {exc}") from exc


TIMING = Timing()


@jesus.hookimpl
def jesus_register_middleware(register: Callable[[Any], None]) -> None:
    register(TIMING)


@jesus.hookimpl
def jesus_register_codecs(register: Callable[[Any], None]) -> None:
    register(Ascii85Codec())
