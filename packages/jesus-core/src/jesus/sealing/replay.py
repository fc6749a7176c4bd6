"""Refusing a replayed message: a sliding window over the counters of one data key, as in
IPsec and DTLS. Memory per data key stays constant, whatever the traffic."""

from __future__ import annotations

WINDOW = 1024  # how far behind the highest counter seen a late message is still taken
_MASK = (1 << WINDOW) - 1


class ReplayWindow:
    __slots__ = ("seen", "top")

    def __init__(self) -> None:
        self.top = -1  # the highest counter accepted
        self.seen = 0  # bit i: counter top - i was accepted

    def check(self, counter: int) -> str | None:
        """Why `counter` must be refused (seen before, or too old), or None."""
        if counter > self.top:
            return None
        behind = self.top - counter
        if behind >= WINDOW:
            return "too far behind the messages already received"
        if self.seen >> behind & 1:
            return "a replay: this message was received before"
        return None

    def accept(self, counter: int) -> None:
        """Mark `counter` seen (after `check` passed and the tag verified)."""
        if counter > self.top:
            shift = counter - self.top
            self.seen = 1 if shift >= WINDOW else ((self.seen << shift) | 1) & _MASK
            self.top = counter
        else:
            self.seen |= 1 << (self.top - counter)
