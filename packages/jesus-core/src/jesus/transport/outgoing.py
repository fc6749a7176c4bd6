"""One call on its way out, planned once by the client and handed to a transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jesus.messages import Meta, ResponseMode
from jesus.transport.traffic import CLIENT, TRAFFIC, Meter

_CLIENT = TRAFFIC.sides[CLIENT]


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

    def meter(self) -> Meter:
        """Where the bytes of this call are counted, both ways: look it up once a call."""
        channel = self.channel
        # A call handed to a provider's connection has no channel of its own: the meta
        # names the one it came by.
        name = (self.meta.channel or "") if channel is None else channel.name
        try:
            return _CLIENT[name][self.target]
        except KeyError:  # the first call of its kind
            return TRAFFIC.meter(CLIENT, name, self.target)

    @property
    def codec(self) -> Any:
        return self.channel.codec

    @property
    def compression(self) -> Any:
        return self.channel.compression
