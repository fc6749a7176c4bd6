"""What a caller knows of each instance it calls: its load (calls in flight, latency) and its
health, with circuit breaking and outlier ejection.

An instance is **ejected** (tried only when every other one failed) when

- it cannot be reached (connection refused, reset before the request left): at once;
- `consecutive_failures` calls in a row failed on its side; or
- at least `min_calls` calls ended within the last `window` seconds and `failure_rate` of
  them failed on its side.

It stays out for `ejection` seconds, doubled at each ejection in a row up to `max_ejection`.
Then it is **half-open**: the next call goes to it first, as a probe (one at a time); a
success readmits it, a failure ejects it again for longer. An instance that has served well
for a `window` after its readmission starts again from `ejection`.

"On its side" means the instance's fault, not the caller's: unreachable, the connection lost,
UNAVAILABLE, REMOTE_FAILURE, INVALID_RESPONSE and deadlines. A refused request (schema,
permission, seal, unknown method), a method at its concurrency limit (RESOURCE_EXHAUSTED)
and a cancelled call say nothing of its health.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from jesus.errors import (
    DeadlineExceeded,
    InvalidResponse,
    RemoteFailure,
    ResourceExhausted,
    Unavailable,
)
from jesus.registry.base import InstanceRecord

# An idle instance's latency estimate halves every LATENCY_HALF_LIFE seconds, so that one
# once slow is tried again in time (it gets no samples while others are chosen).
LATENCY_HALF_LIFE = 10.0
LATENCY_WEIGHT = 0.3  # of each new sample in the moving average
MAX_TRACKED = 4096  # instances whose state is kept (the oldest idle ones are dropped past it)


@dataclass(frozen=True)
class Ejection:
    """When an instance is taken out of rotation, and for how long. See the module doc."""

    consecutive_failures: int = 5
    failure_rate: float = 0.5
    min_calls: int = 10
    window: float = 10.0
    ejection: float = 5.0
    max_ejection: float = 60.0


def counts_against(error: BaseException) -> bool:
    """Whether `error` says something of the instance's health (see the module doc)."""
    if isinstance(error, ResourceExhausted):
        return False
    return isinstance(error, Unavailable | RemoteFailure | InvalidResponse | DeadlineExceeded)


class InstanceState:
    __slots__ = (
        "calls",
        "consecutive",
        "ejected_until",
        "ejections",
        "failures",
        "inflight",
        "latency",
        "probing",
        "readmitted_at",
        "sampled_at",
        "window_start",
    )

    def __init__(self) -> None:
        self.inflight = 0
        self.latency = 0.0  # seconds, moving average; 0 until the first sample
        self.sampled_at = 0.0
        self.consecutive = 0
        self.calls = 0  # ended in the current window
        self.failures = 0  # of them, the instance's fault
        self.window_start = 0.0
        self.ejected_until = 0.0  # 0: in rotation
        self.ejections = 0  # in a row, for the backoff
        self.probing = 0.0  # when the half-open probe went out; 0: none out
        self.readmitted_at = 0.0

    def latency_now(self, now: float) -> float:
        if not self.latency:
            return 0.0
        return self.latency * math.pow(0.5, (now - self.sampled_at) / LATENCY_HALF_LIFE)


class HasRecord(Protocol):
    @property
    def record(self) -> InstanceRecord: ...


C = TypeVar("C", bound=HasRecord)


class HealthBook:
    """The load and health of every instance a resolver's callers reached."""

    def __init__(self, ejection: Ejection | None = None) -> None:
        self.policy = ejection or Ejection()
        self._states: dict[str, InstanceState] = {}
        self.ejected_total = 0  # ejections so far, for tests and metrics

    def state(self, instance_id: str) -> InstanceState:
        state = self._states.get(instance_id)
        if state is None:
            if len(self._states) >= MAX_TRACKED:
                self._forget_idle()
            state = self._states[instance_id] = InstanceState()
        return state

    def peek(self, instance_id: str) -> InstanceState | None:
        return self._states.get(instance_id)

    def is_ejected(self, instance_id: str, now: float | None = None) -> bool:
        state = self._states.get(instance_id)
        if state is None or not state.ejected_until:
            return False
        return (time.monotonic() if now is None else now) < state.ejected_until

    def arrange(self, ordered: Sequence[C]) -> list[C]:
        """`ordered` (a strategy's choice) with ejected instances last; a half-open one whose
        time is up goes first, as the probe that may readmit it."""
        states = self._states
        if not states:
            return list(ordered)
        now = time.monotonic()
        healthy: list[C] = []
        out: list[C] = []
        probe: C | None = None
        for choice in ordered:
            state = states.get(choice.record.instance_id)
            if state is None or not state.ejected_until:
                healthy.append(choice)
            elif (
                probe is None
                and now >= state.ejected_until
                # a probe whose outcome never came (a stream, a call that did not go) is lost
                and now - state.probing > self.policy.ejection
            ):
                state.probing = now
                probe = choice
            else:
                out.append(choice)
        if probe is not None:
            return [probe, *healthy, *out]
        return healthy + out if out else healthy

    # ------------------------------------------------------------------ outcomes

    def started(self, instance_id: str) -> InstanceState:
        state = self.state(instance_id)
        state.inflight += 1
        return state

    def succeeded(self, state: InstanceState, seconds: float, now: float | None = None) -> None:
        """A call ended well after `seconds` (0: no latency sample); `now`, time.monotonic()."""
        if now is None:
            now = time.monotonic()
        self._ended(state, now, seconds)
        state.consecutive = 0
        if state.ejected_until:
            state.ejected_until = 0.0  # the probe succeeded: back in rotation
            state.probing = 0.0
            state.readmitted_at = now
            state.calls = state.failures = 0
            state.window_start = now
        elif state.ejections and now - state.readmitted_at > self.policy.window:
            state.ejections = 0

    def failed(
        self, state: InstanceState, seconds: float, error: BaseException, now: float | None = None
    ) -> None:
        if now is None:
            now = time.monotonic()
        self._ended(state, now, seconds if counts_against(error) else 0.0)
        if not counts_against(error):
            state.probing = 0.0
            return
        state.failures += 1
        state.consecutive += 1
        policy = self.policy
        if state.ejected_until:
            if state.probing or now >= state.ejected_until:
                self._eject(state, now)  # the probe failed
        elif state.consecutive >= policy.consecutive_failures or (
            state.calls >= policy.min_calls and state.failures >= state.calls * policy.failure_rate
        ):
            self._eject(state, now)

    def unreachable(self, instance_id: str) -> None:
        """The instance could not be reached at all: out of rotation at once."""
        state = self.state(instance_id)
        if not state.ejected_until or state.probing or time.monotonic() >= state.ejected_until:
            self._eject(state, time.monotonic())

    def _ended(self, state: InstanceState, now: float, seconds: float) -> None:
        state.inflight = max(0, state.inflight - 1)
        if seconds > 0:
            latency = state.latency
            if not latency:
                state.latency = seconds
            else:
                if now - state.sampled_at > 1.0:
                    latency = state.latency_now(now)
                state.latency = latency + LATENCY_WEIGHT * (seconds - latency)
            state.sampled_at = now
        if now - state.window_start >= self.policy.window:
            state.window_start = now
            state.calls = state.failures = 0
        state.calls += 1

    def _eject(self, state: InstanceState, now: float) -> None:
        policy = self.policy
        state.ejections += 1
        backoff = min(policy.max_ejection, policy.ejection * 2 ** (state.ejections - 1))
        state.ejected_until = now + backoff
        state.probing = 0.0
        state.consecutive = 0
        state.calls = state.failures = 0
        state.window_start = now
        self.ejected_total += 1

    def _forget_idle(self) -> None:
        idle = [k for k, s in self._states.items() if not s.inflight and not s.ejected_until]
        for key in idle[: max(1, len(idle) // 2)]:
            del self._states[key]
