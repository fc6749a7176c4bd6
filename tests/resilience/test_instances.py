"""Routing and fault tolerance against real instances, each in a process of its own
(tests/resilience/instance.py), on asyncio and trio at both ends."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
from jesus.routing.health import Ejection
from tests.resilience.instance import ANSWER, V1_QUOTE
from tests.resilience.instances import instances

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


async def served_by(
    client: jesus.Client, calls: int, data: Any = None, failing: bool = False, **kw: Any
) -> Counter[str]:
    by: Counter[str] = Counter()
    for _ in range(calls):
        try:
            answer = await client.call("pricing.quote", data or {"item": "tea"}, **kw)
        except jesus.RemoteFailure:
            if not failing:
                raise
            by["failed"] += 1
        else:
            by[answer["by"]] += 1
    return by


async def test_an_instance_failing_half_its_calls_is_ejected_then_readmitted(
    registry: str, tmp_path: Path
) -> None:
    (tmp_path / "flaky").touch()
    async with instances(registry, tmp_path) as running, jesus.Client(registry) as client:
        await running.start_all(
            {"name": "good", "version": "1.0.1"},
            {"name": "flaky", "version": "1.0.2", "behaviour": "flaky"},
        )
        client.resolver.health.policy = Ejection(ejection=2.0, max_ejection=2.0)
        # Its failures are the handler's (REMOTE_FAILURE: not retried, it may have run): the
        # error rate (half of at least 10 calls) ejects it.
        first = await served_by(client, 30, failing=True)
        assert 3 <= first["failed"] <= 6, first
        assert client.resolver.health.ejected_total >= 1
        # Ejected: the good one takes the calls.
        while_out = await served_by(client, 20)
        assert while_out["flaky"] <= 2, while_out  # at most a half-open probe or two
        (tmp_path / "flaky").unlink()  # it heals
        await anyio.sleep(2.2)  # past the ejection: the next call probes it
        after = await served_by(client, 20)
        assert after["flaky"] >= 6, after  # readmitted, taking its turns again
        records = await client.resolver.instances("pricing")
        flaky = next(r for r in records if r.version == "1.0.2")
        state = client.resolver.health.peek(flaky.instance_id)
        assert state is not None and not state.ejected_until


async def test_a_slow_instance_is_avoided_by_the_latency_strategy(
    registry: str, tmp_path: Path
) -> None:
    async with instances(registry, tmp_path) as running, jesus.Client(registry) as client:
        await running.start_all({"name": "fast"}, {"name": "slow", "behaviour": "slow"})
        turns = await served_by(client, 20)  # round robin: half each
        assert turns["slow"] >= 8, turns
        by_latency = await served_by(client, 60, strategy="latency")
        assert by_latency["slow"] <= 6, by_latency
        async with jesus.Client(registry, strategy="latency") as chosen:
            # The client's own strategy is the default of its calls.
            own = await served_by(chosen, 30)
            assert own["slow"] <= 4, own


async def test_kills_under_load_are_retried_for_idempotent_methods_and_never_replayed(
    registry: str, tmp_path: Path
) -> None:
    async with instances(registry, tmp_path) as running, jesus.Client(registry) as client:
        await running.start_all(*({"name": name} for name in ("a", "b", "c")))
        quotes: list[Any] = []
        charged: dict[str, BaseException | str] = {}

        async def quoting() -> None:
            for _ in range(60):
                quotes.append(await client.call("pricing.quote", {"item": "tea"}))
                await anyio.sleep(0.005)

        async def charging(n: int) -> None:
            for i in range(8):
                key = f"{n}-{i}"
                try:
                    charged[key] = await client.call("pricing.charge", {"id": key})
                except jesus.CallError as exc:
                    charged[key] = exc

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(quoting)
                tg.start_soon(charging, n)
            await anyio.sleep(0.35)
            running.kill("b")  # kill -9, with calls in flight
        assert len(quotes) == 240 and all(q["by"] in "abc" for q in quotes)
        lost = {k: v for k, v in charged.items() if isinstance(v, BaseException)}
        assert all(isinstance(e, jesus.Unavailable) and e.may_have_run for e in lost.values()), lost
        ran = Counter(running.charges())
        assert max(ran.values()) == 1, ran  # not one charge ran twice
        assert all(ran[k] == 1 for k, v in charged.items() if isinstance(v, str))


async def test_the_retry_budget_caps_retries_during_a_total_outage(
    registry: str, tmp_path: Path
) -> None:
    async with instances(registry, tmp_path) as running, jesus.Client(registry) as client:
        await running.start_all(
            {"name": "d1", "version": "1.0.1", "behaviour": "down"},
            {"name": "d2", "version": "1.0.2", "behaviour": "down"},
        )
        started = anyio.current_time()
        calls = 400
        failed = 0

        async def caller() -> None:
            nonlocal failed
            for _ in range(calls // 8):
                with pytest.raises(jesus.Unavailable, match="is down"):
                    await client.call("pricing.quote", {"item": "tea"})
                failed += 1

        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(caller)
        took = anyio.current_time() - started
        arrived = 0
        for version in ("1.0.1", "1.0.2"):
            arrived += (await client.call(f"pricing@{version}.stats")).get("quote", 0)
        budget = client.retry_budget
        # 3 attempts each would be 1,200; the budget allows 20 % of the calls, 10 a second,
        # and what it saved up before (at most 10 seconds' worth).
        allowed = calls + 0.2 * calls + 10 * took + budget.capacity
        assert failed == calls
        assert calls <= arrived <= allowed, (arrived, allowed)
        assert budget.refused > 0 and budget.spent == arrived - calls
        assert budget.spent < calls / 2


async def test_no_call_fails_during_a_rolling_upgrade_to_an_incompatible_version(
    registry: str, tmp_path: Path
) -> None:
    uses = {"pricing.quote": {"request": V1_QUOTE, "response": ANSWER}}
    async with (
        instances(registry, tmp_path) as running,
        jesus.Client(registry) as plain,
        jesus.Client(registry, name="shop", uses=uses) as declared,
    ):
        await running.start("old", version="1.4.0")
        await running.start("new", version="2.0.0")  # requires a currency; started with warn
        # A v1 request goes only where its schema accepts it: none fails.
        assert await served_by(plain, 20) == {"old": 20}
        # A request both accept is spread over both.
        both = await served_by(plain, 20, {"item": "tea", "currency": "EUR"})
        assert both["old"] >= 5 and both["new"] >= 5, both
        # A caller that declared what it sends keeps to the versions that accept all of it.
        assert await served_by(declared, 20, {"item": "tea", "currency": "EUR"}) == {"old": 20}
        # Pinned versions.
        assert await served_by(plain, 10, {"item": "tea", "currency": "EUR"}, version="^2") == {
            "new": 10
        }
        pinned = await plain.call("pricing@~1.4.quote", {"item": "tea"})
        assert pinned["by"] == "old"
        with pytest.raises(jesus.InvalidRequest) as refused:
            await plain.call("pricing@^2.quote", {"item": "tea"})
        assert "currency" in str(refused.value.details)  # the field at fault
        with pytest.raises(jesus.ServiceNotFound, match=r"range \^3 \(running: 1.4.0, 2.0.0\)"):
            await plain.call("pricing@^3.quote", {"item": "tea"})
        # The old version goes away: the declared caller is told why nothing fits.
        running.kill("old")
        plain.resolver.forget()
        declared.resolver.forget()
        with pytest.raises(jesus.ServiceNotFound, match="fits what this caller declared"):
            await declared.call("pricing.quote", {"item": "tea", "currency": "EUR"})
