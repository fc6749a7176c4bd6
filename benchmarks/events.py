"""Events per second: one emitter, three listener groups, over udp and over tcp (noResponse,
validation on), listeners in another process.

    .venv/bin/python benchmarks/events.py --repeat 3 --duration 2

Each emitted event is delivered once to each of the three groups, so a group receiving as many
events as were emitted means no loss.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,udp"
GROUPS = ("billing", "audit", "mailer")
SCHEMA = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}


def listeners() -> list[Any]:
    import jesus

    services = []
    for group in GROUPS:
        for transport in ("udp", "tcp"):
            svc = jesus.Service(f"{group}-{transport}")
            count = {"n": 0}

            @svc.listener(
                f"tick.{transport}", schema=SCHEMA, channel=f"{transport}+msgpack", group=group
            )
            async def on_tick(data: Any, _count: dict[str, int] = count) -> None:
                _count["n"] += 1

            @svc.method(channel="tcp+msgpack")
            async def received(data: Any, _count: dict[str, int] = count) -> int:
                n, _count["n"] = _count["n"], 0
                return n

            services.append(svc)
    return services


async def serve(registry: str) -> None:
    import jesus

    async with jesus.serve(*listeners(), registry=registry):
        await anyio.sleep_forever()


async def emit(registry: str, transport: str, duration: float) -> tuple[int, list[int]]:
    import jesus

    async with jesus.Client(registry, name="emitter") as client:
        for group in GROUPS:
            await client.call(f"{group}-{transport}.received")
        sent = 0
        stop = time.perf_counter() + duration
        while time.perf_counter() < stop:
            for i in range(100):
                await client.emit(f"tick.{transport}", {"id": i}, schema=SCHEMA)
            sent += 100
        await anyio.sleep(0.5)
        return sent, [await client.call(f"{group}-{transport}.received") for group in GROUPS]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, args.serve)
        return 0
    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-bench-')}"
    proc = subprocess.Popen([sys.executable, __file__, "--serve", registry])
    try:
        deadline = time.monotonic() + 20
        while len(list(Path(registry.removeprefix("embedded://")).glob("*@*.json"))) < 6:
            if time.monotonic() > deadline:
                raise SystemExit("listeners did not start")
            time.sleep(0.05)
        results: dict[str, list[tuple[int, list[int]]]] = {"udp": [], "tcp": []}
        for round_ in range(args.repeat):
            for transport in results:
                results[transport].append(anyio.run(emit, registry, transport, args.duration))
                sent, got = results[transport][-1]
                print(
                    f"round {round_ + 1}/{args.repeat} {transport}: emitted {sent:,}, received {got}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(
        f"\nmedian of {args.repeat} runs x {args.duration}s; command: python benchmarks/events.py "
        f"--repeat {args.repeat} --duration {args.duration}\n"
    )
    print("| channel | events emitted/s | deliveries/s (3 groups) | received/emitted per group |")
    print("|---|---:|---:|---|")
    for transport, runs in results.items():
        emitted = statistics.median(s for s, _ in runs) / args.duration
        delivered = statistics.median(sum(g) for _, g in runs) / args.duration
        ratios = ", ".join(
            f"{statistics.median(g[i] / s for s, g in runs):.2f}" for i in range(len(GROUPS))
        )
        print(f"| {transport}+msgpack | {emitted:,.0f} | {delivered:,.0f} | {ratios} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
