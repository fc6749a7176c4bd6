"""One call on its way out, planned once by the client and handed to a transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jesus.messages import Meta, ResponseMode
from jesus.transport.traffic import CLIENT, TRAFFIC, Meter


@dataclass(slots=True)
class OutgoingCall:
    """Everything a transport needs to send a call; nothing is looked up again after."""

    endpoint: str
    channel: Any  # jesus.channel.Channel: its codec, compression and name
    target: str  # service.method
    data: Any
    meta: Meta
    mode: ResponseMode
    # Absolute deadline on the anyio clock, None for none; meta.deadline_ms carries it across.
    deadline: float | None
    _meter: Meter | None = field(default=None, init=False, repr=False, compare=False)

    def meter(self) -> Meter:
        """Where the bytes of this call are counted, both ways (looked up once)."""
        meter = self._meter
        if meter is None:
            # A call handed to a provider's connection has no channel of its own: the meta
            # names the one it came by.
            channel = self.meta.channel if self.channel is None else self.channel.name
            meter = self._meter = TRAFFIC.meter(CLIENT, channel or "", self.target)
        return meter

    @property
    def codec(self) -> Any:
        return self.channel.codec

    @property
    def compression(self) -> Any:
        return self.channel.compression
