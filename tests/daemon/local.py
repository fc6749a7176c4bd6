"""A local process as any language would write it: the framed protocol of PROTOCOL.md over
the daemon's unix socket, built on the sans-IO protocol alone (no jesus Client)."""

from __future__ import annotations

import itertools
from types import TracebackType
from typing import Any

import anyio

from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.plugins import default_catalog
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import ProtocolConnection, Role

_corrids = itertools.count(1)


class LocalProcess:
    def __init__(self, socket: str) -> None:
        self.socket = socket
        catalog = default_catalog()
        self.proto = ProtocolConnection(
            Role.CLIENT,
            Limits(),
            codec=catalog.codecs["msgpack"],
            compression=catalog.compressions["none"],
        )
        self.events: list[Any] = []

    async def __aenter__(self) -> LocalProcess:
        self.stream = await anyio.connect_unix(self.socket)
        await self.stream.send(self.proto.send_hello())
        await self.next_event(ev.HelloReceived)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stream.aclose()

    async def next_event(self, *kinds: type) -> Any:
        with anyio.fail_after(10):
            while True:
                while self.events:
                    event = self.events.pop(0)
                    if not kinds or isinstance(event, kinds):
                        return event
                self.events += self.proto.receive_data(await self.stream.receive())

    async def send(
        self, method: str, data: Any, mode: ResponseMode, **meta: Any
    ) -> tuple[int, str]:
        corrid = meta.pop("c", None) or f"local-{next(_corrids)}"
        sid, frame = self.proto.send_request(method, {"c": corrid, **meta}, data, mode)
        await self.stream.send(frame)
        return sid, corrid

    async def answer(self, sid: int) -> Any:
        """The final answer of a call: its value, None for an ACK, or the ErrorReceived."""
        event = await self.next_event(ev.ResponseReceived, ev.AckReceived, ev.ErrorReceived)
        assert event.stream_id == sid
        if isinstance(event, ev.ErrorReceived):
            return event
        return event.value if isinstance(event, ev.ResponseReceived) else None

    async def call(self, method: str, data: Any, mode: ResponseMode, **meta: Any) -> Any:
        sid, _ = await self.send(method, data, mode, **meta)
        return await self.answer(sid)

    async def stream_items(self, method: str, data: Any) -> list[Any] | ev.ErrorReceived:
        """Every item of a stream, granting credit as a consumer would."""
        sid, _ = await self.send(method, data, ResponseMode.STREAM)
        items: list[Any] = []
        while True:
            event = await self.next_event(
                ev.ItemReceived, ev.ItemsReceived, ev.EndReceived, ev.ErrorReceived
            )
            if isinstance(event, ev.EndReceived):
                return items
            if isinstance(event, ev.ErrorReceived):
                return event
            got = [event.value] if isinstance(event, ev.ItemReceived) else event.values
            items += got
            await self.stream.send(self.proto.send_credit(sid, len(got), event.size))
