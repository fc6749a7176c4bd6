"""What a change costs per call: this checkout beside another (`--baseline`), the same
validated tcp+msgpack call as rpc.py, CPU time per call of the client and of the server
(each in its own process) and calls/s, in interleaved rounds.

    .venv/bin/python benchmarks/overhead.py --baseline ../jesus-before --repeat 5

CPU per call is what a change adds to each end; on a shared, noisy machine it moves far less
than calls/s (which a busy neighbour halves). The baseline runs with this checkout's virtual
environment and its own packages first on PYTHONPATH: it needs the same dependencies.
Without `--baseline`, only this checkout is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGES = ("jesus-core", "jesus-tcp", "jesus-http")


def measure(calls: int, concurrency: int) -> dict[str, float]:
    """In the checkout on sys.path: serve rpc.py's jesus stack in a process, call it."""
    import anyio

    sys.path.insert(0, str(HERE))
    import stacks
    from rpc import free_port, wait_ready

    os.environ["JESUS_LOAD_PLUGINS"] = "tcp,http"
    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-overhead-')}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "rpc.py"), "--serve", "jesus", str(port), registry]
    )
    try:
        wait_ready(port, registry, "jesus")
        return anyio.run(_drive, registry, server.pid, calls, concurrency, stacks.REQUEST)
    finally:
        server.terminate()
        server.wait(timeout=10)


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(
    registry: str, pid: int, calls: int, concurrency: int, request: Any
) -> dict[str, float]:
    import anyio

    import jesus

    async with jesus.Client(registry) as client:
        for _ in range(500):  # warm: connections, plans, validators
            await client.call("bench.call", request)
        left = calls

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await client.call("bench.call", request)

        server0, client0, wall0 = _cpu_of(pid), time.process_time(), time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        wall = time.perf_counter() - wall0
        client_cpu, server_cpu = time.process_time() - client0, _cpu_of(pid) - server0
    return {
        "calls_per_s": calls / wall,
        "client_us": client_cpu / calls * 1e6,
        "server_us": server_cpu / calls * 1e6,
    }


def run_in(tree: Path, calls: int, concurrency: int) -> dict[str, float]:
    """`measure` in a process whose imports come from `tree`'s packages."""
    path = [str(tree / "packages" / p / "src") for p in PACKAGES] + [str(tree)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    out = subprocess.run(
        [sys.executable, str(HERE / "overhead.py"), "--child", str(calls), str(concurrency)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--calls", type=int, default=20000, help="calls per measurement")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    trees = {"this": HERE.parent}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.repeat):
        for name, tree in trees.items():
            results[name].append(run_in(tree, args.calls, args.concurrency))
    print(f"{args.concurrency} in flight, {args.calls} calls, medians of {args.repeat} rounds\n")
    print("| checkout | calls/s | client CPU µs/call | server CPU µs/call |")
    print("|---|---:|---:|---:|")
    medians = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    for name, m in medians.items():
        print(f"| {name} | {m['calls_per_s']:,.0f} | {m['client_us']:.1f} | {m['server_us']:.1f} |")
    if "baseline" in medians:
        b, t = medians["baseline"], medians["this"]
        print(
            f"| this / baseline | {t['calls_per_s'] / b['calls_per_s']:.2f}x | "
            f"{t['client_us'] / b['client_us']:.3f}x | {t['server_us'] / b['server_us']:.3f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
