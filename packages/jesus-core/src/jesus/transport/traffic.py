"""Bytes per channel and method, both directions, on both ends of a call: added where the
transports encode and read messages, read by whoever reports them (jesus-otel).

A call looks its `Meter` up once; each message then costs one integer add. Meters live as
long as the process, one per (channel, method) a side has seen: the methods a server
serves, the targets a client calls (never a name a peer made up: a refused call counts
nowhere).
"""

from __future__ import annotations

SERVER = "server"
CLIENT = "client"


class Meter:
    """What one side sent and received for the calls of one method over one channel."""

    __slots__ = ("channel", "received", "sent", "side", "target")

    def __init__(self, side: str, channel: str, target: str) -> None:
        self.side = side
        self.channel = channel  # its name, e.g. "tcp+msgpack+none"
        self.target = target  # service.method
        self.sent = 0
        self.received = 0


class Traffic:
    """Every meter of this process, by side, channel and target."""

    def __init__(self) -> None:
        self._meters: dict[tuple[str, str, str], Meter] = {}

    def meter(self, side: str, channel: str, target: str) -> Meter:
        key = (side, channel, target)
        meter = self._meters.get(key)
        if meter is None:
            meter = self._meters[key] = Meter(side, channel, target)
        return meter

    def meters(self) -> list[Meter]:
        # Read from an exporter's thread: list() copies the values in one step.
        return list(self._meters.values())


TRAFFIC = Traffic()
# Where the answers of a call that was refused before it was known go: read by nobody.
UNCOUNTED = Meter("", "", "")
