"""Sealed calls beside plain ones: jesus over tcp and udp, each method plain, `seal="sign"`
and `seal="encrypt"` (validation on, no TLS: the seal is the only protection measured), the
server in its own process, on loopback.

    .venv/bin/python benchmarks/sealed.py --repeat 3 --duration 2

Each (channel, seal, concurrency) is measured --repeat times, interleaved; the table gives
medians and the ratio to the plain call over the same transport.
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

sys.path.insert(0, str(Path(__file__).parent))
import stacks

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,udp"
TRANSPORTS = ("tcp", "udp")
SEALS = ("plain", "sign", "encrypt")


def service() -> Any:
    import jesus

    svc = jesus.Service("bench")
    for transport in TRANSPORTS:
        for seal in SEALS:

            async def handler(data: dict[str, Any]) -> dict[str, Any]:
                return stacks.answer(data)

            svc.method(
                f"{transport}_{seal}",
                request=stacks.REQUEST_SCHEMA,
                response=stacks.RESPONSE_SCHEMA,
                channel=f"{transport}+msgpack",
                seal=None if seal == "plain" else seal,
            )(handler)
    return svc


async def serve(registry: str, pki: str) -> None:
    import jesus
    from jesus.security import devca

    async with jesus.serve(service(), registry=registry, sealing=devca.credentials(pki, "bench")):
        await anyio.sleep_forever()


async def measure(registry: str, pki: str, target: str, concurrency: int, duration: float) -> float:
    import jesus
    from jesus.security import devca

    async with jesus.Client(registry, sealing=devca.credentials(pki, "caller")) as client:
        assert await client.call(target, stacks.REQUEST) == stacks.answer(stacks.REQUEST)
        done = 0
        stop_at = 0.0

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                await client.call(target, stacks.REQUEST)
                done += 1

        for seconds in (0.3, duration):  # warm up, then measure
            done = 0
            stop_at = time.perf_counter() + seconds
            began = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker)
            elapsed = time.perf_counter() - began
    return done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--serve", nargs=2, metavar=("REGISTRY", "PKI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, *args.serve)
        return 0
    from jesus.security import devca

    levels = [int(c) for c in args.concurrency.split(",")]
    folder = tempfile.mkdtemp(prefix="jesus-bench-")
    registry, pki = f"embedded://{folder}/registry", f"{folder}/pki"
    devca.create_ca(pki)
    devca.issue(pki, "bench")
    devca.issue(pki, "caller")
    server = subprocess.Popen([sys.executable, __file__, "--serve", registry, pki])
    results: dict[tuple[str, str, int], list[float]] = {}
    try:
        deadline = time.monotonic() + 20
        while not list(Path(folder, "registry").glob("bench@*.json")):
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.05)
        for round_ in range(args.repeat):
            for concurrency in levels:
                for transport in TRANSPORTS:
                    for seal in SEALS:
                        target = f"bench.{transport}_{seal}"
                        rate = anyio.run(measure, registry, pki, target, concurrency, args.duration)
                        results.setdefault((transport, seal, concurrency), []).append(rate)
                        print(
                            f"round {round_ + 1}/{args.repeat} {transport} {seal:<8} "
                            f"c={concurrency:<3} {rate:>9,.0f} calls/s",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        f"\nmedian of {args.repeat} runs x {args.duration}s; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores; command: python benchmarks/sealed.py --repeat {args.repeat} "
        f"--duration {args.duration} --concurrency {args.concurrency}\n"
    )
    print("| channel | seal | in flight | calls/s | vs plain |")
    print("|---|---|---:|---:|---:|")
    for concurrency in levels:
        for transport in TRANSPORTS:
            plain = statistics.median(results[(transport, "plain", concurrency)])
            for seal in SEALS:
                rate = statistics.median(results[(transport, seal, concurrency)])
                print(
                    f"| {transport}+msgpack | {seal} | {concurrency} | {rate:,.0f} | "
                    f"{rate / plain:.2f}x |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
