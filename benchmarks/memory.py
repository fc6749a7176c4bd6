"""Server memory per idle connection, per call in flight, and of a stream whose consumer
stopped reading: a jesus tcp server in its own process, raw clients, RSS from /proc.

    .venv/bin/python benchmarks/memory.py --connections 500 --calls 500

Each figure is the server's resident set size after minus before, divided by the count (the
allocator keeps some of it, so these are upper bounds of what the objects need).
"""

from __future__ import annotations

import argparse
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

os.environ["JESUS_LOAD_PLUGINS"] = "tcp"
KiB, MiB = 1024, 1024 * 1024


def rss(pid: int) -> int:
    samples = []
    for _ in range(5):
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            line = next(x for x in status if x.startswith("VmRSS:"))
        samples.append(int(line.split()[1]) * KiB)
        time.sleep(0.02)
    return int(statistics.median(samples))


def service() -> Any:
    import jesus

    svc = jesus.Service("bench", channel="tcp+msgpack")
    holding = [0]

    @svc.method()
    async def hold(data: Any) -> None:
        holding[0] += 1
        await anyio.sleep(30)

    @svc.method()
    async def held(data: Any) -> int:
        return holding[0]

    @svc.method(mode="stream", request={"type": "integer"})
    async def blobs(size: int) -> Any:
        blob = os.urandom(size // 2).hex()
        while True:
            yield blob

    return svc


async def serve(port: int, registry: str) -> None:
    import jesus

    limits = jesus.Limits(max_connections=5000)
    async with jesus.serve(
        service(), registry=registry, bind={"tcp": f"127.0.0.1:{port}"}, limits=limits
    ):
        await anyio.sleep_forever()


class Raw:
    """A raw client connection: the jesus handshake, then frames built by the sans-IO
    protocol; it reads only when told to."""

    def __init__(self, port: int) -> None:
        from jesus.limits import Limits
        from jesus.plugins import default_catalog
        from jesus.protocol import wire_events as ev
        from jesus.protocol.connection import ProtocolConnection, Role

        catalog = default_catalog()
        self.proto = ProtocolConnection(
            Role.CLIENT,
            Limits(),
            codec=catalog.codecs["msgpack"],
            compression=catalog.compressions["none"],
        )
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(self.proto.send_hello())
        while not any(
            type(e) is ev.HelloReceived for e in self.proto.receive_data(self.sock.recv(65536))
        ):
            pass

    def request(self, method: str, data: Any, mode: Any) -> None:
        _, frame = self.proto.send_request(method, {"c": "m-1"}, data, mode)
        self.sock.sendall(frame)

    def call(self, method: str, data: Any) -> Any:
        from jesus.messages import ResponseMode
        from jesus.protocol import wire_events as ev

        self.request(method, data, ResponseMode.RESPONSE)
        while True:
            for event in self.proto.receive_data(self.sock.recv(65536)):
                if type(event) is ev.ResponseReceived:
                    return event.value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(serve, int(args.serve[0]), args.serve[1])
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from jesus.messages import ResponseMode
    from rpc import free_port, wait_ready

    folder = tempfile.mkdtemp(prefix="jesus-bench-")
    registry, port = f"embedded://{folder}", free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), registry])
    rows: list[tuple[str, str]] = []
    try:
        wait_ready(port, registry, "jesus")
        warm = Raw(port)  # the first connection and call pay for imports and caches
        warm.request("bench.hold", "x" * 100, ResponseMode.RESPONSE)
        time.sleep(0.5)
        base = rss(server.pid)
        holder = Raw(port)
        for _ in range(args.calls):
            holder.request("bench.hold", "x" * 100, ResponseMode.RESPONSE)
        deadline = time.monotonic() + 10
        while warm.call("bench.held", None) < args.calls + 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        per_call = (rss(server.pid) - base) / args.calls
        rows.append(("per call in flight (100-byte request)", f"{per_call / KiB:.1f} KiB"))

        base = rss(server.pid)
        idle = [Raw(port) for _ in range(args.connections)]
        time.sleep(0.5)
        per_connection = (rss(server.pid) - base) / args.connections
        rows.append(("per idle connection", f"{per_connection / KiB:.1f} KiB"))
        for conn in idle:
            conn.sock.close()
        time.sleep(1)

        from jesus.limits import Limits

        limits = Limits()  # what the raw client announces
        for size in (64 * KiB, 1 * MiB):
            base = rss(server.pid)
            stalled = Raw(port)
            stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * KiB)
            stalled.request("bench.blobs", size, ResponseMode.STREAM)  # and never read
            time.sleep(2)
            held = rss(server.pid) - base
            rows.append(
                (
                    f"a stalled stream of {size // KiB} KiB items (window {limits.stream_window}"
                    f" items, {limits.stream_window_bytes / MiB:.0f} MiB; write buffer "
                    f"{limits.write_buffer_size / MiB:.0f} MiB)",
                    f"{held / MiB:.1f} MiB",
                )
            )
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(
        f"\npython {sys.version.split()[0]}, {os.cpu_count()} cores; command: python "
        f"benchmarks/memory.py --connections {args.connections} --calls {args.calls}\n"
    )
    print("| server memory | RSS growth |")
    print("|---|---:|")
    for what, figure in rows:
        print(f"| {what} | {figure} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
