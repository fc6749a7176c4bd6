"""What the node daemon costs: the same validated call (tcp+msgpack beyond the daemon), made

    direct     jesus.Client -> service
    1 hop      DaemonClient -> daemon -> service
    2 hops     DaemonClient -> daemon -> daemon -> process that provides the service
    node 1 hop a Node.js process (clients/node) -> daemon -> service
    node 2 hops a Node.js process -> daemon -> daemon -> process that provides the service

with every server, daemon and provider in its own process, on loopback; at concurrency 1 and
64, medians of interleaved rounds.

    .venv/bin/python benchmarks/daemon.py --repeat 3

The added latency per hop is (p50 of the path - p50 direct) / hops, at concurrency 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
import stacks
from rpc import drive, free_port, wait_ready

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,http"
PATHS = {"direct": 0, "1 hop": 1, "2 hops": 2}
TARGET = {"direct": "bench.call", "1 hop": "bench.call", "2 hops": "benchp.call"}
NODE = shutil.which("node")
if NODE is not None:  # the same paths from Node.js
    PATHS |= {"node 1 hop": 1, "node 2 hops": 2}
    TARGET |= {"node 1 hop": "bench.call", "node 2 hops": "benchp.call"}


def serve(kind: str, arg: str, registry: str) -> None:
    """One process of the benchmark: the service, a daemon, or the provider."""
    if kind == "service":
        anyio.run(stacks.jesus_server, registry, f"127.0.0.1:{arg}")
    elif kind == "daemon":
        anyio.run(_daemon, arg, registry)
    elif kind == "provider":
        anyio.run(_provider, arg)


async def _daemon(socket: str, registry: str) -> None:
    from jesus_daemon import run_daemon

    async with run_daemon(socket, registry=registry):
        await anyio.sleep_forever()


async def _provider(socket: str) -> None:
    from jesus_daemon import provide

    async with provide(stacks.jesus_service("benchp"), socket=socket):
        await anyio.sleep_forever()


def wait_for(ready: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)


async def measure(path: str, registry: str, socket: str, concurrency: int, duration: float) -> Any:
    import jesus
    from jesus_daemon import DaemonClient

    if path == "direct":
        async with jesus.Client(registry) as client:
            return await drive(
                partial(client.call, TARGET[path], stacks.REQUEST), concurrency, duration
            )
    if path.startswith("node"):
        assert NODE is not None
        script = Path(__file__).with_name("daemon_node.mjs")
        args = [socket, TARGET[path], str(concurrency), str(duration), json.dumps(stacks.REQUEST)]
        done = await anyio.run_process([NODE, str(script), *args])
        return json.loads(done.stdout)
    async with DaemonClient(socket) as daemon:
        return await drive(
            partial(daemon.call, TARGET[path], stacks.REQUEST), concurrency, duration
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", default="1,64")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    work = Path(tempfile.mkdtemp(prefix="jd-bench-", dir="/tmp"))
    registry = f"embedded://{work / 'registry'}"
    caller_socket, service_socket = str(work / "caller.sock"), str(work / "service.sock")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []

    def start(kind: str, arg: str) -> None:
        procs.append(subprocess.Popen([sys.executable, __file__, "--serve", kind, arg, registry]))

    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    levels = [int(c) for c in args.concurrency.split(",")]
    try:
        start("service", str(port))
        wait_ready(port, registry, "jesus")
        start("daemon", caller_socket)
        start("daemon", service_socket)
        wait_for(Path(caller_socket).exists, "the caller's daemon")
        wait_for(Path(service_socket).exists, "the service's daemon")
        start("provider", service_socket)
        wait_for(lambda: any((work / "registry").glob("benchp@*.json")), "the provider")
        for round_ in range(args.repeat):
            for concurrency in levels:
                for path in PATHS:
                    r = anyio.run(
                        measure, path, registry, caller_socket, concurrency, args.duration
                    )
                    results.setdefault((path, concurrency), []).append(r)
                    print(
                        f"round {round_ + 1}/{args.repeat} c={concurrency:<3} {path:<11} "
                        f"{r['calls_per_s']:>9,.0f} calls/s  p50 {r['p50_us']:>7.0f} us",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    print(
        f"\nmedian of {args.repeat} rounds of {args.duration}s; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores; command: python benchmarks/daemon.py --repeat {args.repeat}\n"
    )
    print("| path | concurrency | calls/s | vs direct | p50 us | p99 us | added p50 per hop |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for concurrency in levels:
        base = _median(results, "direct", concurrency)
        for path, hops in PATHS.items():
            m = _median(results, path, concurrency)
            added = f"{(m['p50_us'] - base['p50_us']) / hops:.0f} us" if hops else "-"
            print(
                f"| {path} | {concurrency} | {m['calls_per_s']:,.0f} | "
                f"{m['calls_per_s'] / base['calls_per_s']:.2f}x | {m['p50_us']:.0f} | "
                f"{m['p99_us']:.0f} | {added} |"
            )
    return 0


def _median(results: Any, path: str, concurrency: int) -> dict[str, float]:
    rounds = results[(path, concurrency)]
    return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


if __name__ == "__main__":
    raise SystemExit(main())
