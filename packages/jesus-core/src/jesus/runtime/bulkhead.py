"""A bulkhead: at most `concurrency` calls of one method run at once on a server, whatever
transport they came by, so one slow method cannot take every task, connection and byte the
server has. Past the limit a call is refused before it runs, RESOURCE_EXHAUSTED, with a
`retry_after_ms` hint: how long a call of this method has lately taken (when a slot frees)."""

from __future__ import annotations

import time
from collections.abc import Callable

from jesus.errors import ResourceExhausted

# Weight of each call's duration in the moving average behind the retry-after hint.
WEIGHT = 0.2
MAX_HINT_MS = 60_000
FIRST_HINT_MS = 50  # before any call of the method has ended


class Bulkhead:
    __slots__ = ("active", "limit", "mean", "method")

    def __init__(self, method: str, limit: int) -> None:
        self.method = method
        self.limit = limit
        self.active = 0
        self.mean = 0.0  # seconds a call has lately run

    def enter(self, corrid: str | None) -> Callable[[], None]:
        """Take a slot, or raise ResourceExhausted; call what it returns once the call ends."""
        if self.active >= self.limit:
            known = round(self.mean * 1000) if self.mean else FIRST_HINT_MS
            hint = min(MAX_HINT_MS, max(1, known))
            raise ResourceExhausted(
                f"{self.method} runs {self.active} calls, its limit (concurrency={self.limit}); "
                f"retry after {hint} ms",
                corrid=corrid,
                details={"retry_after_ms": hint},
            )
        self.active += 1
        started = time.monotonic()

        def leave() -> None:
            self.active -= 1
            took = time.monotonic() - started
            self.mean = took if not self.mean else self.mean + WEIGHT * (took - self.mean)

        return leave
