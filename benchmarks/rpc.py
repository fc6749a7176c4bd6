"""RPC throughput and latency: jesus (tcp+msgpack, validation on; and a row with validation
off) beside grpc.aio, aiohttp and a raw asyncio protocol, servers and client in separate
processes, on loopback.

    .venv/bin/python benchmarks/rpc.py                 # all stacks, concurrency 1 and 64
    .venv/bin/python benchmarks/rpc.py --repeat 5 --duration 3

Each (stack, concurrency) is measured --repeat times, interleaved with the others so machine
noise spreads evenly; the table reports medians and ratios to the raw asyncio ceiling.
`jesus-uvloop` runs both its server and its client on uvloop; the other jesus rows share one
server on asyncio.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
import stacks

# Only the transport under test: other installed plugins (an example middleware) stay out.
os.environ["JESUS_LOAD_PLUGINS"] = "tcp,http"

STACKS = {
    "raw-asyncio": "asyncio",
    "raw-floor": "asyncio",
    "grpc.aio": "asyncio",
    "jesus": "asyncio",
    "jesus-novalidate": "asyncio",
    "jesus-uvloop": "asyncio+uvloop",
    "jesus-trio": "trio",
    "aiohttp": "asyncio",
    "jesus-http": "asyncio",
}
SERVER_OF = {
    "raw-asyncio": "raw",
    "raw-floor": "floor",
    "grpc.aio": "grpc",
    "jesus": "jesus",
    "jesus-novalidate": "jesus",
    "jesus-uvloop": "jesus-uvloop",  # both ends on uvloop
    "jesus-trio": "jesus",
    "aiohttp": "aiohttp",
    "jesus-http": "jesus",
}


# The uvloop server's service: the servers share one registry.
UVLOOP_SERVICE = "benchuv"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(kind: str, port: int, registry: str) -> None:
    if kind == "raw":
        import asyncio

        asyncio.run(stacks.raw_server(port))
    elif kind == "floor":
        import asyncio

        asyncio.run(stacks.floor_server(port))
    elif kind == "grpc":
        import asyncio

        asyncio.run(stacks.grpc_server(port))
    elif kind == "aiohttp":
        import asyncio

        asyncio.run(stacks.aiohttp_server(port))
    elif kind == "jesus-uvloop":
        anyio.run(
            stacks.jesus_server,
            registry,
            f"127.0.0.1:{port}",
            UVLOOP_SERVICE,
            backend_options={"use_uvloop": True},
        )
    else:
        anyio.run(stacks.jesus_server, registry, f"127.0.0.1:{port}")


@contextlib.asynccontextmanager
async def client_for(stack: str, port: int, registry: str) -> AsyncIterator[Any]:
    if stack == "raw-asyncio":
        call, close = await stacks.raw_client(port)
    elif stack == "raw-floor":
        call, close = await stacks.floor_client(port)
    elif stack == "grpc.aio":
        call, close = await stacks.grpc_client(port)
    elif stack == "aiohttp":
        call, close = await stacks.aiohttp_client(port)
    else:
        import jesus

        # jesus-novalidate: the same envelope and path, no schema at either end, so that
        # the envelope's cost shows apart from the validator's.
        target = {
            "jesus-http": "bench.call_http",
            "jesus-novalidate": "bench.call_unchecked",
            "jesus-uvloop": f"{UVLOOP_SERVICE}.call",
        }
        validate = stack != "jesus-novalidate"
        async with jesus.Client(registry, validate=validate) as client:
            yield partial(client.call, target.get(stack, "bench.call"), stacks.REQUEST)
        return
    try:
        yield call
    finally:
        await close()


async def measure(
    stack: str, port: int, registry: str, concurrency: int, duration: float
) -> dict[str, float]:
    async with client_for(stack, port, registry) as call:
        return await drive(call, concurrency, duration)


async def drive(call: Any, concurrency: int, duration: float) -> dict[str, float]:
    """`concurrency` callers of `call()` for `duration` seconds, after a warm-up."""
    expected = stacks.answer(stacks.REQUEST)
    assert await call() == expected  # the stacks agree on the answer
    latencies: list[float] = []
    stop_at = 0.0

    async def worker(record: bool) -> None:
        clock = time.perf_counter
        while clock() < stop_at:
            started = clock()
            await call()
            if record:
                latencies.append(clock() - started)

    for record, seconds in ((False, 0.3), (True, duration)):  # warm up, then measure
        latencies.clear()
        stop_at = time.perf_counter() + seconds
        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker, record)
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


def run_measure(
    stack: str, port: int, registry: str, concurrency: int, duration: float
) -> dict[str, float]:
    backend = STACKS[stack]
    options: dict[str, Any] = {}
    if backend == "asyncio+uvloop":
        backend, options = "asyncio", {"use_uvloop": True}
    return anyio.run(
        measure,
        stack,
        port,
        registry,
        concurrency,
        duration,
        backend=backend,
        backend_options=options,
    )


# The service a jesus server kind registers: it is ready once its record is there.
RECORD_OF = {"jesus": "bench", "jesus-uvloop": UVLOOP_SERVICE, "jesus-zmq": "benchzmq"}


def wait_ready(port: int, registry: str, kind: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    record = RECORD_OF.get(kind)
    while time.monotonic() < deadline:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.2),
        ):
            if record is None or any(
                Path(registry.removeprefix("embedded://")).glob(f"{record}@*.json")
            ):
                return
        time.sleep(0.05)
    raise SystemExit(f"{kind} server did not start")


@contextlib.contextmanager
def servers_running(script: str, kinds: set[str], registry: str) -> Iterator[dict[str, int]]:
    """`python SCRIPT --serve KIND PORT REGISTRY`, one process per kind, each on a free
    port once it accepts; yields kind -> port, and stops them after."""
    running: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
    try:
        for kind in sorted(kinds):
            port = free_port()
            proc = subprocess.Popen([sys.executable, script, "--serve", kind, str(port), registry])
            running[kind] = (port, proc)
            wait_ready(port, registry, kind)
        yield {kind: port for kind, (port, _) in running.items()}
    finally:
        for _, proc in running.values():
            proc.terminate()
            proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median)")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated in-flight calls")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--serve", nargs=3, metavar=("KIND", "PORT", "REGISTRY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0

    chosen = [s for s in args.stacks.split(",") if s]
    levels = [int(c) for c in args.concurrency.split(",")]
    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-bench-')}"
    with servers_running(__file__, {SERVER_OF[s] for s in chosen}, registry) as ports:

        def cell(stack: str, concurrency: int) -> dict[str, float]:
            return run_measure(stack, ports[SERVER_OF[stack]], registry, concurrency, args.duration)

        results = interleaved(chosen, levels, args.repeat, cell)
    report(results, chosen, levels, args)
    return 0


Results = dict[tuple[str, int], list[dict[str, float]]]


def interleaved(
    chosen: list[str],
    levels: list[int],
    repeat: int,
    cell: Callable[[str, int], dict[str, float]],
) -> Results:
    """`cell(stack, concurrency)` `repeat` times for each, a round of every cell at a time so
    that machine noise spreads over all of them; progress on stderr."""
    results: Results = {}
    for round_ in range(repeat):
        for concurrency in levels:
            for stack in chosen:
                r = cell(stack, concurrency)
                results.setdefault((stack, concurrency), []).append(r)
                print(
                    f"round {round_ + 1}/{repeat} {stack:<16} c={concurrency:<3} "
                    f"{r['calls_per_s']:>9,.0f} calls/s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def report(
    results: Results,
    chosen: list[str],
    levels: list[int],
    args: argparse.Namespace,
    baselines: tuple[str, ...] = ("raw-asyncio", "grpc.aio", "aiohttp"),
    script: str = "rpc.py",
) -> None:
    """The table of medians, with each stack's ratio to each of `baselines` present."""

    def median(stack: str, c: int, key: str) -> float:
        return statistics.median(r[key] for r in results[(stack, c)])

    print(
        f"\nmedian of {args.repeat} runs x {args.duration}s; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores; command: python benchmarks/{script} "
        f"--repeat {args.repeat} --duration {args.duration} --concurrency {args.concurrency}\n"
    )
    baselines = tuple(b for b in baselines if b in chosen)
    print(
        "| stack | in flight | calls/s | p50 µs | p99 µs | "
        + " | ".join(f"vs {b}" for b in baselines)
        + " |"
    )
    print("|---|---:|---:|---:|---:|" + "---:|" * len(baselines))
    for c in levels:
        base = [median(b, c, "calls_per_s") for b in baselines]
        for stack in chosen:
            cps = median(stack, c, "calls_per_s")
            ratios = " | ".join(f"{cps / b:.2f}x" for b in base)
            print(
                f"| {stack} | {c} | {cps:,.0f} | {median(stack, c, 'p50_us'):,.0f} | "
                f"{median(stack, c, 'p99_us'):,.0f} | {ratios} |"
            )
    if args.json:
        args.json.write_text(json.dumps({f"{s}@{c}": v for (s, c), v in results.items()}, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
