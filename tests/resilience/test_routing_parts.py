"""The parts a client routes with, one at a time: strategies, version ranges, instance
health, the retry policy and budget, and what a provider publishes of them."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

import jesus
from jesus.errors import ConnectionLost
from jesus.plugins import build_catalog, get_plugin_manager
from jesus.registry.base import InstanceRecord, MethodRecord
from jesus.routing.health import Ejection, HealthBook
from jesus.routing.retries import MAX_ATTEMPTS, Retry, RetryBudget
from jesus.routing.strategies import (
    Latency,
    LeastInflight,
    PreferLocal,
    Random,
    RoundRobin,
    make_strategy,
)
from jesus.routing.versions import VersionRange
from jesus.runtime.client import parse_target


@dataclass
class Choice:
    record: InstanceRecord


def choices(*names: str, host: str = "h") -> list[Choice]:
    return [Choice(InstanceRecord("calc", "1.0.0", n, {}, host=host)) for n in names]


def firsts(
    strategy: Any, key: str, options: list[Choice], n: int, book: Any = None
) -> Counter[str]:
    book = book or HealthBook()
    return Counter(strategy.order(key, options, book)[0].record.instance_id for _ in range(n))


# ---------------------------------------------------------------------- strategies


def test_round_robin_starts_at_random_in_each_process_and_counts_per_method() -> None:
    options = choices("a", "b", "c", "d")
    starts = {
        RoundRobin().order("calc.add", options, HealthBook())[0].record.instance_id
        for _ in range(20)
    }
    assert len(starts) > 1  # short-lived callers do not all hit the first instance
    rr = RoundRobin()
    # Two methods called in turn: each spreads over every instance (one counter per service
    # pinned each method to half of them).
    add = [rr.order("calc.add", options[:2], HealthBook())[0].record.instance_id for _ in range(1)]
    for _ in range(9):
        add.append(rr.order("calc.add", options[:2], HealthBook())[0].record.instance_id)
        rr.order("calc.mul", options[:2], HealthBook())
    assert Counter(add) == {"a": 5, "b": 5}


def test_random_least_inflight_latency_and_prefer_local_order_as_they_say() -> None:
    options = choices("a", "b", "c")
    assert set(firsts(Random(), "k", options, 60)) == {"a", "b", "c"}
    book = HealthBook()
    for _ in range(3):
        book.started("a")
    book.started("b")
    assert firsts(LeastInflight(), "k", options, 10, book) == {"c": 10}
    ordered = LeastInflight().order("k", options, book)
    assert [c.record.instance_id for c in ordered] == ["c", "b", "a"]

    book = HealthBook()
    book.succeeded(book.started("slow"), 0.050)
    book.succeeded(book.started("fast"), 0.001)
    two = choices("slow", "fast")
    assert firsts(Latency(), "k", two, 30, book) == {"fast": 30}
    # Never tried: worth a sample, before the known ones.
    assert firsts(Latency(), "k", [*two, *choices("new")], 200, book)["slow"] < 40

    mixed = choices("far1", host="far") + choices("here1", "here2", host="here")
    local = PreferLocal("here")
    got = firsts(local, "k", mixed, 10)
    assert got == {"here1": 5, "here2": 5}
    assert local.order("k", mixed, HealthBook())[-1].record.instance_id == "far1"


def test_a_plugin_adds_a_strategy_and_callers_choose_it_by_name() -> None:
    class Last:
        name = "last"

        def order(self, key: str, options: Any, health: Any) -> list[Any]:
            return list(reversed(options))

    class Plugin:
        @jesus.hookimpl
        def jesus_register_strategies(self, register: Any) -> None:
            register("last", Last)

    pm, failures = get_plugin_manager(load_entry_points=False)
    pm.register(Plugin(), name="strategy-plugin")
    catalog = build_catalog(pm, failures)
    assert catalog.contributions["strategy-plugin"] == ["strategy:last"]
    strategy = make_strategy("last", catalog.strategies)
    assert strategy.order("k", [1, 2, 3], HealthBook()) == [3, 2, 1]  # type: ignore[arg-type]
    assert jesus.Client(catalog=catalog, strategy="last").strategy.name == "last"
    with pytest.raises(jesus.ConfigurationError, match="unknown load-balancing strategy 'nope'"):
        jesus.Client(strategy="nope")
    with pytest.raises(jesus.ConfigurationError, match="has no order"):
        jesus.Client(strategy=object())  # type: ignore[arg-type]

    class Shadow:
        @jesus.hookimpl
        def jesus_register_strategies(self, register: Any) -> None:
            register("random", Last)

    pm, failures = get_plugin_manager(load_entry_points=False)
    pm.register(Shadow(), name="shadow")
    catalog = build_catalog(pm, failures)
    assert "already registered" in catalog.failures[0].error  # a built-in cannot be replaced


# ---------------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("spec", "yes", "no"),
    [
        ("^1.2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0"]),
        ("~1", ["1.0.0", "1.9.0"], ["2.0.0"]),
        ("1.x", ["1.0.0", "1.5.2"], ["2.0.0", "0.9.0"]),
        ("1.2", ["1.2.0", "1.2.7"], ["1.3.0"]),
        ("1.2.3", ["1.2.3", "1.2.3-rc.1"], ["1.2.4"]),
        (">=1.0, <2", ["1.0.0", "1.99.0"], ["2.0.0", "0.9.9"]),
        (">= 1.0 < 2", ["1.5.0"], ["2.0.0"]),
        (">1.2", ["1.3.0"], ["1.2.9"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("*", ["0.0.1", "dev"], []),
        ("dev", ["dev"], ["1.0.0"]),
    ],
)
def test_version_ranges(spec: str, yes: list[str], no: list[str]) -> None:
    pinned = VersionRange.parse(spec)
    assert all(pinned.matches(v) for v in yes), spec
    assert not any(pinned.matches(v) for v in no), spec


def test_latest_keeps_only_the_highest_version_and_bad_ranges_are_named() -> None:
    assert VersionRange.parse("latest").choose(["1.0.0", "2.1.0", "1.9.0", "2.1.0"]) == {"2.1.0"}
    for bad in (">=", "^a.b", "1..2", "~x.y"):
        with pytest.raises(jesus.ConfigurationError, match="version range"):
            VersionRange.parse(bad)
    assert parse_target("calc@^1.2.add") == ("calc", "add", "^1.2")
    assert parse_target("calc.add") == ("calc", "add", None)
    for bad in ("calc", "calc@^1", ".add", "calc@.add"):
        with pytest.raises(jesus.ConfigurationError, match=r"must be 'service\.method'"):
            parse_target(bad)


# ---------------------------------------------------------------------- health


def test_consecutive_failures_eject_and_a_half_open_probe_readmits() -> None:
    book = HealthBook(Ejection(consecutive_failures=3, ejection=0.05, max_ejection=0.2))
    two = choices("bad", "good")
    for _ in range(3):
        book.failed(book.started("bad"), 0.001, jesus.RemoteFailure("x"))
    assert book.is_ejected("bad")
    assert [c.record.instance_id for c in book.arrange(two)] == ["good", "bad"]
    time.sleep(0.06)
    probe = book.arrange(two)
    assert probe[0].record.instance_id == "bad"  # half-open: the next call probes it
    assert book.arrange(two)[0].record.instance_id == "good"  # one probe at a time
    before = time.monotonic()
    book.failed(book.started("bad"), 0.001, jesus.Unavailable("x"))
    after = time.monotonic()
    state = book.peek("bad")
    assert state is not None and state.ejections == 2
    assert before + 0.1 <= state.ejected_until <= after + 0.1  # the backoff doubled
    time.sleep(0.11)
    assert book.arrange(two)[0].record.instance_id == "bad"
    book.succeeded(book.started("bad"), 0.001)
    assert not book.is_ejected("bad") and book.arrange(two)[0].record.instance_id == "bad"


def test_a_probe_whose_outcome_never_comes_is_sent_again_later() -> None:
    book = HealthBook(Ejection(consecutive_failures=1, ejection=0.05, max_ejection=0.05))
    two = choices("bad", "good")
    book.failed(book.started("bad"), 0.001, jesus.RemoteFailure("x"))
    time.sleep(0.06)
    assert book.arrange(two)[0].record.instance_id == "bad"  # the probe (say, a stream's)
    assert book.arrange(two)[0].record.instance_id == "good"  # one at a time
    time.sleep(0.06)  # no outcome came within an ejection: that probe is lost
    assert book.arrange(two)[0].record.instance_id == "bad"


def test_the_health_book_keeps_a_bounded_number_of_instances(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from jesus.routing import health

    monkeypatch.setattr(health, "MAX_TRACKED", 10)
    book = HealthBook()
    book.unreachable("ejected")
    for n in range(100):
        book.succeeded(book.started(f"i{n}"), 0.001)
    assert len(book._states) <= 10
    assert book.is_ejected("ejected")  # what it still needs is kept


def test_only_the_instances_own_failures_count_against_it() -> None:
    book = HealthBook(Ejection(consecutive_failures=2))
    callers_fault = [
        jesus.InvalidRequest("x"),
        jesus.PermissionDenied("x"),
        jesus.ResourceExhausted("x"),
        jesus.UnknownMethod("x"),
        jesus.Cancelled("x"),
    ]
    for error in callers_fault * 2:
        book.failed(book.started("a"), 0.001, error)
    assert not book.is_ejected("a")
    book.unreachable("a")  # refused connection: out at once
    assert book.is_ejected("a")
    book.failed(book.started("b"), 0.001, ConnectionLost("x"))
    book.failed(book.started("b"), 0.001, jesus.DeadlineExceeded("x"))
    assert book.is_ejected("b")


# ---------------------------------------------------------------------- retries


def test_retry_policy_caps_attempts_and_jitters_within_its_bounds() -> None:
    assert Retry(attempts=99).attempts == MAX_ATTEMPTS
    policy = Retry(attempts=3, backoff=0.01, max_backoff=0.03)
    delays = [policy.delay(n) for n in (1, 2, 3, 4) for _ in range(50)]
    assert all(0 <= d <= 0.03 for d in delays) and len(set(delays)) > 10  # full jitter
    assert policy.delay(1, floor=0.5) == 0.5  # a retry-after hint comes first
    for bad in ({"attempts": 0}, {"backoff": 2.0, "max_backoff": 1.0}, {"attempts": 1.5}):
        with pytest.raises(ValueError):
            Retry(**bad)  # type: ignore[arg-type]


def test_the_budget_allows_a_share_of_the_calls_and_a_rate() -> None:
    budget = RetryBudget(percent=0.5, per_second=0.0)
    assert not budget.withdraw()
    budget.deposit()
    budget.deposit()
    assert budget.withdraw() and not budget.withdraw()
    assert (budget.spent, budget.refused) == (1, 2)
    for bad in ({"percent": 1.5}, {"per_second": -1.0}, {"ttl": 0.0}):
        with pytest.raises(ValueError, match="retry budget"):
            RetryBudget(**bad)
    timed = RetryBudget(percent=0.0, per_second=100.0, ttl=0.1)  # saves up 10 at most
    time.sleep(0.2)
    assert sum(timed.withdraw() for _ in range(30)) == 10


def test_what_a_provider_publishes_round_trips_and_nonsense_is_refused() -> None:
    published = MethodRecord(
        True, True, jesus.ResponseMode.RESPONSE, "tcp", idempotent=True, retry=Retry(4), timeout=2.5
    )
    raw = published.to_json()
    assert raw["idempotent"] is True and raw["retry"]["attempts"] == 4 and raw["timeout"] == 2.5
    assert MethodRecord.from_json(raw) == published
    plain = MethodRecord(True, True, jesus.ResponseMode.RESPONSE, "tcp")
    assert not {"idempotent", "retry", "timeout"} & set(plain.to_json())  # defaults: not written
    for field, value, says in [
        ("idempotent", "yes", "'idempotent' must be a JSON boolean"),
        ("retry", {"attempts": "3"}, "retry.attempts"),
        ("retry", {"attempts": 0}, "attempts must be an integer >= 1"),
        ("timeout", -1, "'timeout' must be between"),
        ("timeout", 1e9, "'timeout' must be between"),
    ]:
        with pytest.raises(ValueError, match=says):
            MethodRecord.from_json({**raw, field: value})
    svc = jesus.Service("calc")
    for kwargs, says in [
        ({"retry": 0}, "attempts"),
        ({"timeout": 0}, "timeout"),
        ({"concurrency": 0}, "concurrency"),
    ]:
        with pytest.raises(jesus.ConfigurationError, match=says):
            svc.method(**kwargs)  # type: ignore[arg-type]


def test_over_http_a_full_bulkhead_is_429_with_retry_after() -> None:
    from jesus_http.mapping import STATUS_OF
    from jesus_http.responses import error_response

    full = jesus.ResourceExhausted("full", details={"retry_after_ms": 1500})
    head = error_response(full).split(b"\r\n\r\n", 1)[0].decode().lower()
    assert head.startswith("http/1.1 429 too many requests")
    assert "retry-after: 2" in head  # whole seconds, rounded up
    assert "x-jesus-error: resource_exhausted" in head
    assert STATUS_OF["RESOURCE_EXHAUSTED"] == 429
    hintless = error_response(jesus.ResourceExhausted("full")).decode().lower()
    assert "retry-after" not in hintless


def test_declared_uses_name_methods() -> None:
    with pytest.raises(jesus.ConfigurationError, match="must be 'service"):
        jesus.Client(uses={"nodot": {}})
