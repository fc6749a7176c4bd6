"""Datagrams per second through jesus over udp+msgpack (noResponse, validation on) versus a raw
asyncio DatagramProtocol sender and receiver, in one run; receivers in their own processes.

    .venv/bin/python benchmarks/udp.py --repeat 5 --duration 2

The sender sends as fast as it can for --duration seconds; the receiver counts what arrived.
received/sent below 1 is loss (a full socket buffer: UDP drops, by design).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgpack

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,udp"
LINE = {"level": "info", "msg": "user logged in", "user": 42}
SCHEMA = {
    "type": "object",
    "properties": {
        "level": {"type": "string"},
        "msg": {"type": "string"},
        "user": {"type": "integer"},
    },
    "required": ["level", "msg"],
}


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ raw asyncio


class _Counter(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if data == b"count?":
            self.transport.sendto(str(self.count).encode(), addr)
            self.count = 0
            return
        msgpack.unpackb(data)
        self.count += 1


async def raw_receiver(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(_Counter, local_addr=("127.0.0.1", port))
    await asyncio.Event().wait()


async def raw_send(port: int, duration: float) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port)
    )
    sent = 0
    stop = time.perf_counter() + duration
    while time.perf_counter() < stop:
        for _ in range(100):
            transport.sendto(msgpack.packb(LINE))
        sent += 100
        await asyncio.sleep(0)
    await asyncio.sleep(0.3)
    reply: asyncio.Future[bytes] = loop.create_future()

    class Ask(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if not reply.done():
                reply.set_result(data)

    ask, _ = await loop.create_datagram_endpoint(Ask, remote_addr=("127.0.0.1", port))
    while not reply.done():
        ask.sendto(b"count?")
        await asyncio.wait([reply], timeout=0.2)
    transport.close()
    ask.close()
    return sent, int(reply.result())


# ------------------------------------------------------------------ jesus


def jesus_service() -> Any:
    import jesus

    svc = jesus.Service("sink", channel="udp+msgpack")
    state = {"count": 0}

    @svc.method(mode="noResponse", request=SCHEMA)
    async def log(data: Any) -> None:
        state["count"] += 1

    @svc.method(channel="tcp+msgpack")
    async def count(data: Any) -> int:
        n, state["count"] = state["count"], 0
        return n

    return svc


async def jesus_receiver(registry: str) -> None:
    import jesus

    async with jesus.serve(jesus_service(), registry=registry):
        await anyio.sleep_forever()


async def jesus_send(registry: str, duration: float) -> tuple[int, int]:
    import jesus

    async with jesus.Client(registry) as client:
        await client.call("sink.count")
        sent = 0
        stop = time.perf_counter() + duration
        while time.perf_counter() < stop:
            for _ in range(100):
                await client.notify("sink.log", LINE)
            sent += 100
        await anyio.sleep(0.3)
        return sent, await client.call("sink.count")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        kind, where = args.serve
        if kind == "raw":
            asyncio.run(raw_receiver(int(where)))
        else:
            anyio.run(jesus_receiver, where)
        return 0

    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-bench-')}"
    raw_port = free_port(socket.SOCK_DGRAM)
    procs = [
        subprocess.Popen([sys.executable, __file__, "--serve", "raw", str(raw_port)]),
        subprocess.Popen([sys.executable, __file__, "--serve", "jesus", registry]),
    ]
    try:
        deadline = time.monotonic() + 20
        while not list(Path(registry.removeprefix("embedded://")).glob("sink@*.json")):
            if time.monotonic() > deadline:
                raise SystemExit("jesus receiver did not start")
            time.sleep(0.05)
        time.sleep(0.3)
        results: dict[str, list[tuple[int, int]]] = {"raw asyncio": [], "jesus udp+msgpack": []}
        for round_ in range(args.repeat):
            results["raw asyncio"].append(asyncio.run(raw_send(raw_port, args.duration)))
            results["jesus udp+msgpack"].append(anyio.run(jesus_send, registry, args.duration))
            print(
                f"round {round_ + 1}/{args.repeat}: "
                + ", ".join(
                    f"{k} sent {v[-1][0]:,} received {v[-1][1]:,}" for k, v in results.items()
                ),
                file=sys.stderr,
                flush=True,
            )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
    print(
        f"\nmedian of {args.repeat} runs x {args.duration}s; command: python benchmarks/udp.py "
        f"--repeat {args.repeat} --duration {args.duration}\n"
    )
    print("| stack | sent/s | received/s | received/sent | received/s vs raw |")
    print("|---|---:|---:|---:|---:|")
    raw_rx = statistics.median(r for _, r in results["raw asyncio"]) / args.duration
    for name, runs in results.items():
        sent = statistics.median(s for s, _ in runs) / args.duration
        received = statistics.median(r for _, r in runs) / args.duration
        ratio = statistics.median(r / s for s, r in runs)
        print(
            f"| {name} | {sent:,.0f} | {received:,.0f} | {ratio:.2f} | {received / raw_rx:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
