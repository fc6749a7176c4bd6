"""CPU time per call at each end of tcp+msgpack (validation on), the figure that a busy
machine disturbs least: calls/s move with whatever else runs, the CPU a call costs much less.
The server (on asyncio) and the client (`--backend`) run in processes of their own, as in
`rpc.py`; `--backend uvloop` runs both ends on uvloop (rpc.py's jesus-uvloop row).

    .venv/bin/python benchmarks/cpu.py --concurrency 64 --duration 2 --repeat 3
    git archive BASE_COMMIT packages | tar -x -C /tmp/base       # the tree to compare with
    .venv/bin/python benchmarks/cpu.py --base /tmp/base          # both, interleaved

`--base DIR`: also measure the packages under DIR/packages (a `git archive` of another
commit), put first on the import path; each round runs both, one after the other.

`--stacks raw-asyncio,raw-floor,jesus`: the same figures for the raw asyncio protocol and
the floor (raw, plus the work no validated call can skip: `stacks.py`), beside jesus.
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

HERE = Path(__file__).parent
# The packages a tcp call runs through; the rest come from the installed tree.
PACKAGES = ("jesus-core", "jesus-tcp", "jesus-http")

CLIENT = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["JESUS_LOAD_PLUGINS"] = "tcp,http"
from functools import partial
import anyio, rpc, stacks

port, registry, concurrency, duration, server_pid, backend, target, stack = sys.argv[2:10]

def cpu_of(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

async def measure(call):
    await rpc.drive(call, int(concurrency), 0.3)
    server0, client0 = cpu_of(server_pid), time.process_time()
    result = await rpc.drive(call, int(concurrency), float(duration))
    client1, server1 = time.process_time(), cpu_of(server_pid)
    calls = result["calls_per_s"] * float(duration)
    result["client_us"] = (client1 - client0) / calls * 1e6
    result["server_us"] = (server1 - server0) / calls * 1e6
    return result

async def main():
    if stack != "jesus":
        async with rpc.client_for(stack, int(port), registry) as call:
            return await measure(call)
    import jesus
    async with jesus.Client(registry) as client:
        return await measure(partial(client.call, target, stacks.REQUEST))

uvloop = backend == "uvloop"
options = {"backend_options": {"use_uvloop": True}} if uvloop else {}
print(json.dumps(anyio.run(main, backend="asyncio" if uvloop else backend, **options)))
"""


def measure(
    pythonpath: str,
    concurrency: int,
    duration: float,
    backend: str,
    target: str = "bench.call",
    stack: str = "jesus",
) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    from rpc import SERVER_OF, UVLOOP_SERVICE, free_port, wait_ready

    env = dict(os.environ, JESUS_LOAD_PLUGINS="tcp,http")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-bench-')}"
    port = free_port()
    kind = SERVER_OF[stack]
    if backend == "uvloop" and stack == "jesus":
        kind = SERVER_OF["jesus-uvloop"]
        target = target.replace("bench.", f"{UVLOOP_SERVICE}.", 1)
    server = subprocess.Popen(
        [sys.executable, str(HERE / "rpc.py"), "--serve", kind, str(port), registry],
        env=env,
    )
    try:
        wait_ready(port, registry, kind)
        time.sleep(0.3)
        argv = [str(HERE), str(port), registry, str(concurrency), str(duration), str(server.pid)]
        argv += [backend, target, stack]
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, *argv],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base", type=Path, help="a tree to compare with (DIR/packages/...)")
    parser.add_argument(
        "--backend",
        default="asyncio",
        choices=["asyncio", "trio", "uvloop"],
        help="the client's (uvloop: the server's too)",
    )
    parser.add_argument(
        "--target",
        default="bench.call",
        help="bench.call (tcp+msgpack), bench.call_http (http+json), bench.call_unchecked",
    )
    parser.add_argument(
        "--stacks", default="jesus", help="comma-separated: jesus, raw-asyncio, raw-floor"
    )
    args = parser.parse_args()
    trees = {"this tree": ""}
    if args.base is not None:
        paths = [str(args.base / "packages" / p / "src") for p in PACKAGES]
        trees = {f"base ({args.base})": os.pathsep.join(paths), **trees}
    cells = {
        (name if stack == "jesus" else stack): (pythonpath, stack)
        for stack in args.stacks.split(",")
        for name, pythonpath in (trees.items() if stack == "jesus" else [("", "")])
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cells}
    for round_ in range(args.repeat):
        for name, (pythonpath, stack) in cells.items():
            r = measure(
                pythonpath, args.concurrency, args.duration, args.backend, args.target, stack
            )
            results[name].append(r)
            print(
                f"round {round_ + 1}/{args.repeat} {name}: {r['calls_per_s']:,.0f} calls/s, "
                f"client {r['client_us']:.1f} us, server {r['server_us']:.1f} us per call",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"\nmedians of {args.repeat}, {args.concurrency} in flight, {args.duration}s each, "
        f"client on {args.backend}, server on "
        f"{'uvloop' if args.backend == 'uvloop' else 'asyncio'}\n"
    )
    print("| tree | calls/s | client CPU µs/call | server CPU µs/call | p50 µs |")
    print("|---|---:|---:|---:|---:|")
    for name, rs in results.items():

        def median(key: str, rs: list[dict[str, float]] = rs) -> float:
            return statistics.median(r[key] for r in rs)

        print(
            f"| {name} | {median('calls_per_s'):,.0f} | {median('client_us'):.1f} | "
            f"{median('server_us'):.1f} | {median('p50_us'):,.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
