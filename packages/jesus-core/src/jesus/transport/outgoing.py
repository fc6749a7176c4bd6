"""One call on its way out, planned once by the client and handed to a transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jesus.messages import Meta, ResponseMode


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

    @property
    def codec(self) -> Any:
        return self.channel.codec

    @property
    def compression(self) -> Any:
        return self.channel.compression
