"""Receiver-side memory of message ids, so a retransmitted datagram never runs a handler twice.

Each (sender, message id) is remembered from its first arrival until its expiry: the
window, or the message's own deadline if that is later (the sender stops retransmitting at
its deadline). A duplicate of a message still running is dropped; a duplicate of one that
was answered gets the same answer again, since the first answer may be what got lost.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

_RUNNING = None  # the answer of a message still being handled


class DedupWindow:
    def __init__(self, window: float, capacity: int) -> None:
        self.window = window
        self.capacity = capacity
        self._entries: OrderedDict[Any, list[Any]] = OrderedDict()  # key -> [expires, answer]
        self.evicted_early = 0  # forgotten before expiry because capacity was reached

    def __len__(self) -> int:
        return len(self._entries)

    def check(
        self, key: Any, now: float, deadline: float | None = None
    ) -> tuple[bool, bytes | None]:
        """(True, cached answer or None) for a duplicate; (False, None) for a new message,
        which is then remembered as running."""
        self._purge(now)
        entry = self._entries.get(key)
        if entry is not None:
            return True, entry[1]
        expires = now + self.window
        if deadline is not None and deadline > expires:
            expires = deadline
        self._entries[key] = [expires, _RUNNING]
        if len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
            self.evicted_early += 1
        return False, None

    def answered(self, key: Any, answer: bytes) -> None:
        entry = self._entries.get(key)
        if entry is not None:
            entry[1] = answer

    def _purge(self, now: float) -> None:
        entries = self._entries
        while entries:
            key, entry = next(iter(entries.items()))
            if entry[0] > now:
                return
            del entries[key]
