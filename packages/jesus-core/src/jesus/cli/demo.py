"""`jesus demo`: start `pricing` and `orders` in separate processes on a private embedded
registry, then exercise every installed channel in every mode it carries, printing each step.
Exits 0 when everything went as expected."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio

from jesus.cli.demo_services import demo_channels, modes_of, slug
from jesus.errors import InvalidRequest, JesusError
from jesus.messages import ResponseMode
from jesus.runtime.client import Client


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    async def run(self, label: str, step: Callable[[], Awaitable[str]]) -> None:
        started = time.perf_counter()
        try:
            detail = await step()
        except (JesusError, AssertionError, OSError) as exc:
            self.failed += 1
            print(f"  FAIL  {label}: {type(exc).__name__}: {exc}", flush=True)
            return
        ms = (time.perf_counter() - started) * 1000
        self.passed += 1
        print(f"  ok    {label:<46} {ms:7.1f} ms  {detail}", flush=True)


def _spawn(target: str, backend: str, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "jesus", "--backend", backend, "serve", target],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def _wait_for(client: Client, services: list[str], deadline: float) -> None:
    while True:
        found = {r.service for r in await client.resolver.backend.list_instances()}
        if all(s in found for s in services):
            return
        if time.monotonic() > deadline:
            missing = [s for s in services if s not in found]
            raise JesusError(f"services did not register in time: {', '.join(missing)}")
        await anyio.sleep(0.1)


async def _exercise(registry: str, timeout: float) -> Checks:
    checks = Checks()
    async with Client(registry, name="demo", timeout=10) as client:
        await _wait_for(client, ["pricing", "orders"], time.monotonic() + timeout / 2)
        print("pricing and orders are up, each in its own process\n", flush=True)
        for channel in demo_channels():
            s, modes = slug(channel), modes_of(channel)
            seed = "  (the seed's compressedHttp)" if channel == "http+json+gzip" else ""
            print(f"channel {channel}{seed}", flush=True)

            async def place(_s: str = s) -> str:
                r = await client.call(f"orders.place_{_s}", {"sku": "pear", "qty": 4})
                assert r["total"] == 3.0, r
                assert r["my_corrid"] == r["pricing_corrid"], "corrid did not flow"
                return f"total {r['total']}, corrid {r['my_corrid']} flowed orders -> pricing"

            await checks.run(f"response   orders.place_{s}", place)

            if ResponseMode.STREAM in modes:

                async def ticker(_s: str = s) -> str:
                    items = [i async for i in client.stream(f"pricing.ticker_{_s}", {"n": 20})]
                    assert [i["seq"] for i in items] == list(range(20)), items
                    return f"{len(items)} items in order"

                await checks.run(f"stream     pricing.ticker_{s}", ticker)
            else:
                streaming = sorted(
                    t.scheme
                    for t in client.catalog.transports.values()
                    if ResponseMode.STREAM in t.modes
                )
                print(
                    f"  --    stream     not carried by {channel.split('+')[0]}: streams go over "
                    f"{', '.join(streaming)}"
                )

            async def audit(_s: str = s) -> str:
                result = await client.call(f"pricing.audit_{_s}", {"event": "login"})
                assert result is None
                return "acknowledged"

            await checks.run(f"ack        pricing.audit_{s}", audit)

            async def log(_s: str = s) -> str:
                for n in range(3):
                    await client.notify(f"pricing.log_{_s}", {"line": f"line {n}"})
                return "3 lines sent, not waited for"

            await checks.run(f"noResponse pricing.log_{s}", log)

            async def invalid(_s: str = s) -> str:
                try:
                    await client.call(f"pricing.quote_{_s}", {"sku": "fig", "qty": 0})
                except InvalidRequest as exc:
                    return f"refused as expected: {exc.details[0] if exc.details else exc}"
                raise AssertionError("an invalid request was accepted")

            await checks.run(f"invalid    pricing.quote_{s}", invalid)
            print(flush=True)

        async def delivered() -> str:
            expected = len(demo_channels())
            for _ in range(50):  # noResponse lines may still be in flight
                stats = await client.call("pricing.stats", None)
                if (
                    stats["logs"] >= 3 * expected
                    and stats["audits"] >= expected
                    and stats["orders placed"] >= expected
                    and stats["order events"] >= expected
                ):
                    return f"{stats['audits']} audits, {stats['logs']} log lines arrived"
                await anyio.sleep(0.05)
            raise AssertionError(f"not everything arrived: {stats}")

        await checks.run("pricing.stats", delivered)

        async def events() -> str:
            stats = await client.call("pricing.stats", None)
            groups = await client.emit("order.shipped", {"order": 1}, mode="ack")
            assert groups == ["pricing"], groups
            return (
                f"order.placed reached pricing on two channels, udp (order.*) and tcp "
                f"(order.placed): {stats['order events']} + {stats['orders placed']}; "
                f"order.shipped acked by {groups}"
            )

        await checks.run("events     order.placed, order.shipped", events)
    return checks


def run_demo(backend: str, timeout: float) -> int:
    registry_dir = tempfile.mkdtemp(prefix="jesus-demo-")
    registry = f"embedded://{registry_dir}"
    env = {**os.environ, "JESUS_REGISTRY": registry}
    print(f"jesus demo on {backend}, registry {registry}")
    print(f"channels: {', '.join(demo_channels())}\n", flush=True)
    log_path = os.path.join(registry_dir, "services.log")
    log = open(log_path, "wb")  # noqa: SIM115 - shared by both children, closed below
    procs = [
        _spawn("jesus.cli.demo_services:pricing", backend, env, log),
        _spawn("jesus.cli.demo_services:orders", backend, env, log),
    ]
    try:
        checks = anyio.run(partial(_exercise, registry, timeout), backend=backend)
    except JesusError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = [_wait(proc) for proc in procs]
        log.close()
    print(f"services stopped with exit codes {codes} (their output: {log_path})")
    ok = checks.failed == 0 and codes == [0, 0]
    summary = f"{checks.passed} checks ok, {checks.failed} failed"
    print(f"demo {'succeeded' if ok else 'FAILED'}: {summary}")
    return 0 if ok else 1


def _wait(proc: subprocess.Popen[Any]) -> int | None:
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()
