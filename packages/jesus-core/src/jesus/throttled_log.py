"""Logging what a peer can cause at will (refused callers, failed handshakes) without letting
a flood of them flood the log."""

from __future__ import annotations

import logging
import time
from typing import Any


class ThrottledLog:
    """At most `per_second` lines a second; the lines left out are counted, and the count
    goes out with the next line that does."""

    def __init__(self, logger: logging.Logger, per_second: int = 10) -> None:
        self.logger = logger
        self.per_second = per_second
        self._window_start = -1.0
        self._sent = 0
        self.suppressed = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._sent = 0
        if self._sent >= self.per_second:
            self.suppressed += 1
            return
        self._sent += 1
        if self.suppressed:
            message += " [%d similar lines left out]"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self.logger.warning(message, *args)
