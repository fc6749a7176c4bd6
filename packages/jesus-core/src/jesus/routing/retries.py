"""Retries: the policy a provider publishes for each method, and the budget of each client.

A method's policy (`@svc.method(idempotent=True, retry=3)`, in its registry record as
`idempotent` and `retry`) says how many attempts a call may make, and whether it may be
replayed after it may have run. Every caller applies the callee's rules:

- a failure that says the handler did not run (unreachable, UNAVAILABLE, RESOURCE_EXHAUSTED)
  may be tried again on another instance; one that says it may have run (the connection lost
  with the call in flight) only when the method is idempotent; the others never (see
  `CallError.safe_to_retry`);
- attempts wait a full-jitter backoff (a random time up to `backoff * 2**n`, at most
  `max_backoff`; at least a RESOURCE_EXHAUSTED's `retry_after`), all inside the call's one
  deadline: a retry that could not finish in time is not made;
- a request that never left (refused connection) moves to the next instance at once and is
  no attempt: nothing can have run;
- a call made while handling a call whose caller may retry it is not retried itself (the
  outer caller's retry covers it; retries do not multiply down a chain of calls);
- every retry spends from the client's `RetryBudget`, so an outage is not multiplied.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Retry:
    """At most `attempts` attempts (capped at MAX_ATTEMPTS), `backoff`/`max_backoff` in
    seconds. The default makes one more attempt, for failures that did not run."""

    attempts: int = 2
    backoff: float = 0.025
    max_backoff: float = 1.0

    def __post_init__(self) -> None:
        if type(self.attempts) is not int or self.attempts < 1:
            raise ValueError(f"retry attempts must be an integer >= 1, not {self.attempts!r}")
        if not 0 <= self.backoff <= self.max_backoff <= 60:
            raise ValueError("retry backoff must be 0 <= backoff <= max_backoff <= 60 seconds")
        object.__setattr__(self, "attempts", min(self.attempts, MAX_ATTEMPTS))

    @classmethod
    def of(cls, value: int | Retry | None) -> Retry:
        if value is None:
            return DEFAULT_RETRY
        return value if isinstance(value, Retry) else cls(attempts=value)

    def delay(self, retry: int, floor: float = 0.0) -> float:
        """How long to wait before retry number `retry` (1 for the first)."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** (retry - 1))
        return max(floor, random.uniform(0.0, ceiling))

    def to_json(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "backoff_ms": round(self.backoff * 1000),
            "max_backoff_ms": round(self.max_backoff * 1000),
        }

    @classmethod
    def from_json(cls, raw: Any) -> Retry:
        """Raises ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("field 'retry' must be a JSON object")
        values = {}
        for key, name in (
            ("attempts", "attempts"),
            ("backoff_ms", "backoff"),
            ("max_backoff_ms", "max_backoff"),
        ):
            if key in raw:
                value = raw[key]
                if type(value) not in (int, float) or value != value:
                    raise ValueError(f"field 'retry.{key}' must be a number, got {value!r}")
                values[name] = value if name == "attempts" else value / 1000
        if "attempts" in values and type(values["attempts"]) is not int:
            raise ValueError("field 'retry.attempts' must be an integer")
        return cls(**values)


DEFAULT_RETRY = Retry()
NO_RETRY = Retry(attempts=1)


class RetryBudget:
    """Retries a client may make: `percent` of its calls plus `per_second`, saved up to
    `per_second * ttl` (Finagle's default: 20 % and 10 a second over 10 s). A token bucket:
    each call adds `percent` of a token, time adds `per_second`, each retry takes one."""

    def __init__(self, percent: float = 0.2, per_second: float = 10.0, ttl: float = 10.0) -> None:
        if not 0 <= percent <= 1 or per_second < 0 or ttl <= 0:
            raise ValueError("a retry budget needs 0 <= percent <= 1, per_second >= 0, ttl > 0")
        self.percent = percent
        self.per_second = per_second
        self.capacity = max(1.0, per_second * ttl)
        self._tokens = min(self.capacity, per_second)
        self._at = time.monotonic()
        self.spent = 0  # retries made
        self.refused = 0  # retries the budget did not allow

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.per_second)
        self._at = now

    def deposit(self) -> None:
        """A call was made (the cap is applied when a retry is taken)."""
        self._tokens += self.percent

    def withdraw(self) -> bool:
        """Take one retry, if the budget has it."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.spent += 1
            return True
        self.refused += 1
        return False
