"""RPC over zeromq: jesus's zmq channel (asyncio, trio, and asyncio under CURVE) beside zerorpc
(the zeromq RPC library people use, on gevent) and beside jesus over tcp (asyncio and trio),
servers and clients in separate processes, on loopback.

    .venv/bin/python benchmarks/zeromq.py --repeat 3 --duration 1

The call is rpc.py's (a three-field object in and out, msgpack on the wire); jesus validates
both ends, zerorpc checks nothing. A trio stack runs trio at both ends. Cells are interleaved
round by round (rpc.py's `interleaved`); the table has medians and ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).parent))
import rpc
import stacks

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,http,zmq"  # rpc.py leaves zmq out
PKI = "JESUS_BENCH_PKI"  # where the CURVE stack's certificates are, for the servers

# stack -> (server kind, client backend)
STACKS = {
    "zerorpc": ("zerorpc", "gevent"),
    "jesus-zmq": ("jesus-zmq", "asyncio"),
    "jesus-zmq-trio": ("jesus-zmq-trio", "trio"),
    "jesus-zmq-curve": ("jesus-zmq-curve", "asyncio"),
    "jesus-tcp": ("jesus", "asyncio"),
    "jesus-tcp-trio": ("jesus-tcp-trio", "trio"),
}
# What each jesus server kind registers (the service its clients call), and how it serves.
SERVICE_OF = {
    "jesus-zmq": "benchzmq",
    "jesus-zmq-trio": "benchzmqtrio",
    "jesus-zmq-curve": "benchzmqcurve",
    "jesus-tcp-trio": "benchtcptrio",
}
rpc.RECORD_OF.update(SERVICE_OF)  # servers_running waits for their records


def jesus_service(name: str, transport: str) -> Any:
    import jesus

    svc = jesus.Service(name, channel=f"{transport}+msgpack")

    @svc.method(request=stacks.REQUEST_SCHEMA, response=stacks.RESPONSE_SCHEMA)
    async def call(data: dict[str, Any]) -> dict[str, Any]:
        return stacks.answer(data)

    return svc


async def jesus_server(kind: str, port: int, registry: str) -> None:
    import jesus
    from jesus.security import devca

    transport = "tcp" if kind == "jesus-tcp-trio" else "zmq"
    sealing = devca.credentials(os.environ[PKI], SERVICE_OF[kind]) if "curve" in kind else None
    svc = jesus_service(SERVICE_OF[kind], transport)
    bind = {transport: f"127.0.0.1:{port}"}
    async with jesus.serve(svc, registry=registry, bind=bind, sealing=sealing):
        await anyio.sleep_forever()


def serve(kind: str, port: int, registry: str) -> None:
    if kind == "zerorpc":
        import zerorpc

        class Bench:
            def call(self, request: dict[str, Any]) -> dict[str, Any]:
                return stacks.answer(request)

        server = zerorpc.Server(Bench())
        server.bind(f"tcp://127.0.0.1:{port}")
        server.run()
    elif kind == "jesus":
        rpc.serve(kind, port, registry)
    else:
        anyio.run(
            jesus_server, kind, port, registry, backend="trio" if "trio" in kind else "asyncio"
        )


@contextlib.asynccontextmanager
async def jesus_client(stack: str, registry: str) -> AsyncIterator[Any]:
    import jesus
    from jesus.security import devca

    kind = STACKS[stack][0]
    target = f"{SERVICE_OF.get(kind, 'bench')}.call"
    sealing = devca.credentials(os.environ[PKI], "client") if "curve" in stack else None
    async with jesus.Client(registry, sealing=sealing) as client:

        async def call() -> Any:
            return await client.call(target, stacks.REQUEST)

        yield call


def measure_zerorpc(port: int, concurrency: int, duration: float) -> dict[str, float]:
    """rpc.drive's loop, on gevent: zerorpc's client runs nowhere else."""
    import gevent
    import zerorpc

    client = zerorpc.Client(timeout=30)
    client.connect(f"tcp://127.0.0.1:{port}")
    assert client("call", stacks.REQUEST) == stacks.answer(stacks.REQUEST)
    latencies: list[float] = []
    elapsed = 0.0
    for record, seconds in ((False, 0.3), (True, duration)):
        latencies.clear()
        stop_at = time.perf_counter() + seconds

        def worker(record: bool = record, stop_at: float = stop_at) -> None:
            clock = time.perf_counter
            while clock() < stop_at:
                started = clock()
                client("call", stacks.REQUEST)
                if record:
                    latencies.append(clock() - started)

        began = time.perf_counter()
        gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)])
        elapsed = time.perf_counter() - began
    client.close()
    latencies.sort()
    return {
        "calls_per_s": len(latencies) / elapsed,
        "p50_us": latencies[len(latencies) // 2] * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


def measure(stack: str, port: int, registry: str, concurrency: int, duration: float) -> Any:
    """One cell: jesus's clients here (as rpc.py's), zerorpc's in a process of its own, on
    gevent (this script with --client)."""
    if stack == "zerorpc":
        command = [sys.executable, __file__, "--client", str(port), str(concurrency)]
        command.append(str(duration))
        return json.loads(subprocess.run(command, check=True, capture_output=True).stdout)

    async def run() -> dict[str, float]:
        async with jesus_client(stack, registry) as call:
            return await rpc.drive(call, concurrency, duration)

    return anyio.run(run, backend=STACKS[stack][1])


def make_pki() -> str:
    from jesus.security import devca

    folder = tempfile.mkdtemp(prefix="jesus-bench-pki-")
    devca.create_ca(folder)
    for name in ("benchzmqcurve", "client"):
        devca.issue(folder, name)
    return folder


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="measurements per cell (median)")
    parser.add_argument("--concurrency", default="1,64", help="comma-separated in-flight calls")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated subset")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return 0
    if args.client:
        port, concurrency, duration = args.client
        print(json.dumps(measure_zerorpc(int(port), int(concurrency), float(duration))))
        return 0

    chosen = [s for s in args.stacks.split(",") if s]
    unknown = set(chosen) - set(STACKS)
    if unknown:
        raise SystemExit(f"unknown stacks: {', '.join(sorted(unknown))}")
    if "zerorpc" in chosen and importlib_missing("zerorpc"):
        raise SystemExit("zerorpc is not installed (the bench dependency group has it)")
    levels = [int(c) for c in args.concurrency.split(",")]
    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-bench-')}"
    os.environ[PKI] = make_pki()
    kinds = {STACKS[s][0] for s in chosen}
    with rpc.servers_running(__file__, kinds, registry) as ports:

        def cell(stack: str, concurrency: int) -> dict[str, float]:
            port = ports[STACKS[stack][0]]
            return measure(stack, port, registry, concurrency, args.duration)

        results = rpc.interleaved(chosen, levels, args.repeat, cell)
    rpc.report(results, chosen, levels, args, ("zerorpc", "jesus-tcp"), "zeromq.py")
    return 0


def importlib_missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


if __name__ == "__main__":
    raise SystemExit(main())
