"""Load-balancing strategies: in which order a call tries the instances able to take it.

A strategy orders the candidates of one call; the first is tried first, the others only if
it fails (and the call may be tried again). The health book then moves ejected instances
last. Built in:

- `round_robin` (the default): in turn, counted per method, from a random start in each
  process (short-lived callers spread too);
- `random`: a fresh shuffle per call;
- `least_inflight`: the instance with the fewest of this caller's calls in flight, in turn
  among equals;
- `latency`: power of two choices: two instances at random, the one whose latency (a moving
  average that fades while it is not used) times its calls in flight is lower first;
- `prefer_local`: instances on this host first (the record's `host`; the node daemon's own),
  each group in turn.

Choose per client (`Client(strategy="latency")`) or per call (`call(..., strategy=...)`); a
plugin adds its own through the `jesus_register_strategies` hook.
"""

from __future__ import annotations

import itertools
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from jesus.errors import ConfigurationError
from jesus.routing.health import C, HealthBook

# Methods whose turn counters a strategy keeps (callers name the methods).
MAX_KEYS = 4096


class Strategy(Protocol):
    """Orders the candidates of a call. `key` is `service.method`; `choices` have `.record`
    (jesus.registry.InstanceRecord); `health` gives each instance's load. Returns them all,
    in the order to try them. Runs on every call: keep it cheap."""

    name: str

    def order(self, key: str, choices: Sequence[C], health: HealthBook) -> list[C]: ...


class _Turns:
    """A turn counter per key, each from a random start."""

    def __init__(self) -> None:
        self._counters: dict[str, Iterator[int]] = {}

    def next(self, key: str) -> int:
        counter = self._counters.get(key)
        if counter is None:
            if len(self._counters) >= MAX_KEYS:
                self._counters.clear()
            counter = self._counters[key] = itertools.count(random.randrange(1 << 30))
        return next(counter)


def _rotated(choices: Sequence[C], turn: int) -> list[C]:
    if not choices:
        return []
    start = turn % len(choices)
    return [*choices[start:], *choices[:start]]


class RoundRobin:
    name = "round_robin"

    def __init__(self) -> None:
        self._turns = _Turns()

    def order(self, key: str, choices: Sequence[C], health: HealthBook) -> list[C]:
        if len(choices) < 2:
            return list(choices)
        return _rotated(choices, self._turns.next(key))


class Random:
    name = "random"

    def order(self, key: str, choices: Sequence[C], health: HealthBook) -> list[C]:
        return random.sample(choices, len(choices))


class LeastInflight:
    name = "least_inflight"

    def __init__(self) -> None:
        self._turns = _Turns()

    def order(self, key: str, choices: Sequence[C], health: HealthBook) -> list[C]:
        if len(choices) < 2:
            return list(choices)

        def inflight(choice: C) -> int:
            state = health.peek(choice.record.instance_id)
            return 0 if state is None else state.inflight

        return sorted(_rotated(choices, self._turns.next(key)), key=inflight)


class Latency:
    """Power of two choices on latency (Mitzenmacher; Finagle's and Linkerd's default)."""

    name = "latency"

    def __init__(self) -> None:
        self._turns = _Turns()

    def order(self, key: str, choices: Sequence[C], health: HealthBook) -> list[C]:
        if len(choices) < 2:
            return list(choices)
        now = time.monotonic()

        def cost(choice: C) -> float:
            state = health.peek(choice.record.instance_id)
            if state is None:
                return 0.0  # never tried: worth a sample
            return state.latency_now(now) * (state.inflight + 1)

        first, second = random.sample(range(len(choices)), 2)
        if cost(choices[second]) < cost(choices[first]):
            first, second = second, first
        rest = [c for i, c in enumerate(choices) if i not in (first, second)]
        return [choices[first], choices[second], *_rotated(rest, self._turns.next(key))]


class PreferLocal:
    """Instances whose record's `host` is this host first; `host` defaults to this machine's
    name (what `serve()` writes in its records)."""

    name = "prefer_local"

    def __init__(self, host: str | None = None) -> None:
        self.host = host or os.uname().nodename
        self._turns = _Turns()

    def order(self, key: str, choices: Sequence[C], health: HealthBook) -> list[C]:
        if len(choices) < 2:
            return list(choices)
        turn = self._turns.next(key)
        here = self.host
        local = [c for c in choices if c.record.host == here]
        if len(local) == len(choices) or not local:
            return _rotated(choices, turn)
        others = [c for c in choices if c.record.host != here]
        return _rotated(local, turn) + _rotated(others, turn)


BUILTIN: dict[str, Callable[[], Strategy]] = {
    "round_robin": RoundRobin,
    "random": Random,
    "least_inflight": LeastInflight,
    "latency": Latency,
    "prefer_local": PreferLocal,
}


def make_strategy(
    spec: str | Strategy, installed: dict[str, Callable[[], Strategy]] | None = None
) -> Strategy:
    """A strategy by name (a built-in or a plugin's), or the strategy given."""
    if not isinstance(spec, str):
        if not callable(getattr(spec, "order", None)):
            raise ConfigurationError(f"{spec!r} is not a strategy: it has no order() method")
        return spec
    factories = {**BUILTIN, **(installed or {})}
    factory = factories.get(spec)
    if factory is None:
        raise ConfigurationError(
            f"unknown load-balancing strategy {spec!r}; installed: {', '.join(sorted(factories))}"
        )
    return factory()
