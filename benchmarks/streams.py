"""One stream of many small items: jesus (tcp+msgpack, each item checked against its schema
at both ends) on asyncio, uvloop and trio, beside a raw asyncio server writing
length-prefixed msgpack items; servers in their own processes, on loopback.

    .venv/bin/python benchmarks/streams.py --repeat 3 --items 100000

Reports items/s and the time to the first item, medians of the interleaved repeats, and the
ratio to the raw server.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgpack

HAVE_ZMQ = importlib.util.find_spec("jesus_zmq") is not None
PLUGINS = "tcp,zmq" if HAVE_ZMQ else "tcp"
os.environ["JESUS_LOAD_PLUGINS"] = PLUGINS
ITEM_SCHEMA = {
    "type": "object",
    "properties": {"i": {"type": "integer"}, "name": {"type": "string"}},
    "required": ["i", "name"],
}
_LEN = struct.Struct("!I")
STACKS = {
    "raw-asyncio": "asyncio",
    "jesus": "asyncio",
    "jesus-uvloop": "uvloop",
    "jesus-trio": "trio",
}
if HAVE_ZMQ:
    STACKS["jesus-zmq"] = "asyncio"
# What each stack's server is (one process per kind), and the service a jesus stack calls.
SERVICE_OF = {"jesus-zmq": "benchzmq"}


def item(i: int) -> dict[str, Any]:
    return {"i": i, "name": "widget"}


# ------------------------------------------------------------------ raw asyncio


async def raw_server(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                (count,) = _LEN.unpack(await reader.readexactly(4))
            except asyncio.IncompleteReadError:
                return
            batch = []
            for i in range(count):
                body = msgpack.packb(item(i))
                batch.append(_LEN.pack(len(body)) + body)
                if len(batch) == 64:  # one write per batch, and the socket's back-pressure
                    writer.write(b"".join(batch))
                    batch.clear()
                    await writer.drain()
            writer.write(b"".join(batch) + _LEN.pack(0))  # the end
            await writer.drain()

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


class _RawStreamClient(asyncio.Protocol):
    """Every frame of a read parsed in one pass, as a careful raw client would."""

    def __init__(self, began: float) -> None:
        self.buffer = bytearray()
        self.got = 0
        self.began = began
        self.first = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        offset = 0
        while len(buf) - offset >= 4:
            (length,) = _LEN.unpack_from(buf, offset)
            if length == 0:
                self.done.set_result(None)
                return
            if len(buf) - offset - 4 < length:
                break
            msgpack.unpackb(buf[offset + 4 : offset + 4 + length])
            if self.got == 0:
                self.first = time.perf_counter() - self.began
            self.got += 1
            offset += 4 + length
        del buf[:offset]


async def raw_stream(port: int, count: int) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    began = time.perf_counter()
    transport, proto = await loop.create_connection(
        lambda: _RawStreamClient(began), "127.0.0.1", port
    )
    transport.write(_LEN.pack(count))
    await proto.done
    elapsed = time.perf_counter() - began
    transport.close()
    assert proto.got == count
    return count / elapsed, proto.first


# ------------------------------------------------------------------ jesus


def service(name: str, channel: str) -> Any:
    import jesus

    svc = jesus.Service(name, channel=channel)

    @svc.method(mode="stream", request={"type": "integer"}, response=ITEM_SCHEMA)
    async def items(count: int) -> Any:
        for i in range(count):
            yield item(i)

    return svc


async def jesus_server(registry: str, port: int, transport: str) -> None:
    import jesus

    name = "benchzmq" if transport == "zmq" else "bench"
    svc = service(name, f"{transport}+msgpack")
    async with jesus.serve(svc, registry=registry, bind={transport: f"127.0.0.1:{port}"}):
        await anyio.sleep_forever()


async def jesus_stream(registry: str, count: int, name: str) -> tuple[float, float]:
    import jesus

    async with jesus.Client(registry) as client:
        async for _ in client.stream(f"{name}.items", 10):  # connected, route cached
            pass
        began = time.perf_counter()
        first = 0.0
        got = 0
        async for _ in client.stream(f"{name}.items", count):
            if got == 0:
                first = time.perf_counter() - began
            got += 1
        elapsed = time.perf_counter() - began
    assert got == count
    return count / elapsed, first


def measure(stack: str, port: int, registry: str, count: int) -> tuple[float, float]:
    if stack == "raw-asyncio":
        return asyncio.run(raw_stream(port, count))
    backend = STACKS[stack]
    options = {"use_uvloop": True} if backend == "uvloop" else {}
    return anyio.run(
        jesus_stream,
        registry,
        count,
        SERVICE_OF.get(stack, "bench"),
        backend="asyncio" if backend == "uvloop" else backend,
        backend_options=options,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000, help="items per stream")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument(
        "--serve", nargs=3, metavar=("KIND", "PORT", "REGISTRY"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve:
        kind, port, registry = args.serve
        if kind == "raw":
            asyncio.run(raw_server(int(port)))
        else:
            anyio.run(jesus_server, registry, int(port), "zmq" if kind == "jesus-zmq" else "tcp")
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from rpc import servers_running

    os.environ["JESUS_LOAD_PLUGINS"] = PLUGINS  # rpc's own, set on import, is not ours

    chosen = [s for s in args.stacks.split(",") if s]
    registry = f"embedded://{tempfile.mkdtemp(prefix='jesus-bench-')}"
    results: dict[str, list[tuple[float, float]]] = {}
    kind_of = {
        stack: "raw" if stack == "raw-asyncio" else "jesus-zmq" if stack == "jesus-zmq" else "jesus"
        for stack in chosen
    }
    with servers_running(__file__, set(kind_of.values()), registry) as ports:
        for round_ in range(args.repeat):
            for stack in chosen:
                rate, first = measure(stack, ports[kind_of[stack]], registry, args.items)
                results.setdefault(stack, []).append((rate, first))
                print(
                    f"round {round_ + 1}/{args.repeat} {stack:<13} {rate:>11,.0f} items/s, "
                    f"first after {first * 1e3:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"\nmedian of {args.repeat} streams of {args.items:,} items; python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cores; command: python "
        f"benchmarks/streams.py --repeat {args.repeat} --items {args.items}\n"
    )
    base = (
        statistics.median(r for r, _ in results["raw-asyncio"])
        if "raw-asyncio" in results
        else None
    )
    print("| stack | items/s | first item ms | vs raw-asyncio |")
    print("|---|---:|---:|---:|")
    for stack in chosen:
        rate = statistics.median(r for r, _ in results[stack])
        first = statistics.median(f for _, f in results[stack])
        ratio = f"{rate / base:.3f}x" if base else "-"
        print(f"| {stack} | {rate:,.0f} | {first * 1e3:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
