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
    """Every meter of this process: side -> channel -> target -> Meter."""

    def __init__(self) -> None:
        self.sides: dict[str, dict[str, dict[str, Meter]]] = {SERVER: {}, CLIENT: {}}

    def meter(self, side: str, channel: str, target: str) -> Meter:
        by_target = self.sides[side].setdefault(channel, {})
        meter = by_target.get(target)
        if meter is None:
            meter = by_target[target] = Meter(side, channel, target)
        return meter

    def meters(self) -> list[Meter]:
        # Read from an exporter's thread: list() copies in one step what a call may add to.
        return [
            meter
            for channels in self.sides.values()
            for by_target in list(channels.values())
            for meter in list(by_target.values())
        ]


TRAFFIC = Traffic()
# Where the answers of a call that was refused before it was known go: read by nobody.
UNCOUNTED = Meter("", "", "")
