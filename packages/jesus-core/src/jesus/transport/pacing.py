"""A run of noResponse calls: each stays cancellable, and other tasks run every
`YIELD_EVERY` of them (a turn of the event loop for each would cost more than the send)."""

from __future__ import annotations

import anyio.lowlevel

YIELD_EVERY = 16


class Pacer:
    __slots__ = ("_unyielded",)

    def __init__(self) -> None:
        self._unyielded = 0  # sends since the last yield

    async def step(self) -> None:
        """After a send that did not have to wait."""
        self._unyielded += 1
        if self._unyielded >= YIELD_EVERY:
            self._unyielded = 0
            await anyio.lowlevel.checkpoint()
        else:
            await anyio.lowlevel.checkpoint_if_cancelled()

    async def yield_now(self) -> None:
        """After a send that queued: the task that empties the queue gets its turn."""
        self._unyielded = 0
        await anyio.lowlevel.checkpoint()
