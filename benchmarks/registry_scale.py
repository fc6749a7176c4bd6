"""What the memcached registry costs as the system grows: N instance records (N/5 services of
five instances each) written through the backend's own `register()` into a real memcached
that this script starts on a free loopback port, then:

- `serve()` start: a new service that uses, emits and listens to what the others declare, from
  `serve()` entered to serving (the compatibility check and its registration included);
- warm emits/s: one emitter (its own Client) emitting noResponse events to that service's
  listener over tcp, back to back, its registry cache refreshed every `--refresh` seconds;
- max stall: the longest gap between two of those emits, refreshes included;
- emitter traffic: registry bytes/s while it emits (its refreshes; the new service's beats);
- bytes per heartbeat: one renewal (register again) and one check (`is_registered`), as
  memcached counts them (both directions), and the total of N instances beating: a renewal
  every TTL/3 (10 s TTL) and a check every second in between;
- gone: one service with N instances, a tenth of them vanish without deregistering; the time
  and bytes of a reader's first listing after they expired (it removes them from the index),
  then of its next one.

    .venv/bin/python benchmarks/registry_scale.py                 # N = 10, 100, 1000, 5000
    .venv/bin/python benchmarks/registry_scale.py --sizes 10,1000 --duration 3
    .venv/bin/python benchmarks/registry_scale.py --quick          # N = 10, 100, briefly
"""

from __future__ import annotations

import argparse
import gc
import getpass
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from typing import Any

import anyio

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,memcache"

PER_SERVICE = 5
TTL = 10.0
CHECK_EVERY = 1.0
SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 0},
        "name": {"type": "string", "maxLength": 200},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["id"],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.05)


def start_memcached() -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("memcached")
    if binary is None:
        raise SystemExit("memcached is not installed (bash scripts/system-deps)")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            *("-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "512", "-c", "4096"),
            "-u",
            getpass.getuser(),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(port, proc, "memcached")
    time.sleep(1.1)  # its clock ticks once a second: let it tick before short TTLs are set
    return proc, port


def start_proxy(target: int) -> tuple[subprocess.Popen[bytes], int, int]:
    listen, control = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--proxy", f"{listen},{target},{control}"])
    wait_for(control, proc, "the counting proxy")
    return proc, listen, control


async def proxy(listen: int, target: int, control: int) -> None:
    """Forward loopback port `listen` to memcached's `target` port, counting the bytes both
    ways; a connection to `control` reads the count. memcached's own `stats` leave out the
    values of some writes."""
    import asyncio

    moved = [0]

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                moved[0] += len(data)
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def report(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(1):
            writer.write(b"%d\n" % moved[0])
            await writer.drain()

    await asyncio.start_server(forward, "127.0.0.1", listen)
    await asyncio.start_server(report, "127.0.0.1", control)
    await asyncio.Event().wait()


class Traffic:
    """The bytes moved between the registry's clients and memcached, as the proxy counts."""

    def __init__(self, control: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", control))
        self.file = self.sock.makefile("rb")

    def mark(self) -> int:
        self.sock.sendall(b"?")
        return int(self.file.readline())

    def since(self, mark: int) -> int:
        return self.mark() - mark

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def service_name(k: int) -> str:
    return f"s{k:05d}"


def fake_record(k: int, services: int, j: int) -> Any:
    from jesus.messages import ResponseMode
    from jesus.registry.base import InstanceRecord, MethodRecord

    channel = "tcp+msgpack+none"
    name, nxt = service_name(k), service_name((k + 1) % services)
    listens: dict[str, Any] = {
        f"{nxt}.changed": {"schema": SCHEMA, "channel": channel, "channels": [channel]}
    }
    if k % 10 == 0:
        listens[f"{nxt}.*"] = {"schema": True, "channel": channel, "channels": [channel]}
    return InstanceRecord(
        service=name,
        version="1.0.0",
        instance_id=f"{name}-{j}",
        endpoints={"tcp": "tcp://127.0.0.1:9"},
        methods={
            f"m{i}": MethodRecord(SCHEMA, SCHEMA, ResponseMode.RESPONSE, channel, f"method {i}")
            for i in range(4)
        },
        listens=listens,
        emits={f"{name}.changed": {"schema": SCHEMA, "mode": "noResponse"}},
        uses={f"{nxt}.m0": {"request": SCHEMA, "response": SCHEMA}},
        host="elsewhere",
        pid=0,
    )


async def populate(backend: Any, records: list[Any], ttl: float) -> None:
    limiter = anyio.Semaphore(8)

    async def one(record: Any) -> None:
        async with limiter:
            await backend.register(record, ttl)

    async with anyio.create_task_group() as tg:
        for record in records:
            tg.start_soon(one, record)


def newcomer() -> Any:
    import jesus

    svc = jesus.Service("newcomer", version="1.0.0")
    svc.use("s00000.m0", request=SCHEMA, response=SCHEMA)
    svc.emitter("s00000.changed", schema=SCHEMA)
    received = {"n": 0}

    @svc.listener("bench.tick", schema=SCHEMA, channel="tcp+msgpack")
    async def on_tick(data: Any) -> None:
        received["n"] += 1

    @svc.listener("s00001.changed", schema=SCHEMA, channel="tcp+msgpack")
    async def on_changed(data: Any) -> None:
        pass

    return svc


async def measure(port: int, control: int, n: int, args: argparse.Namespace) -> dict[str, float]:
    import jesus
    from jesus.testing.registry import record
    from jesus_schema_memcache import MemcacheRegistry

    url = f"memcache://127.0.0.1:{port}?prefix=b{uuid.uuid4().hex[:8]}"
    services = max(1, n // PER_SERVICE)
    records = [fake_record(k, services, j) for k in range(services) for j in range(PER_SERVICE)]
    writer = MemcacheRegistry(url)
    await populate(writer, records, ttl=600)
    await writer.aclose()
    out: dict[str, float] = {"n": len(records)}
    beating = records[0]
    del records, writer  # an emitter holds no one else's records: nor does this process
    gc.collect()
    backend = MemcacheRegistry(url)
    traffic = Traffic(control)

    started = time.perf_counter()
    async with jesus.serve(newcomer(), registry=url, ttl=TTL):
        out["start_s"] = time.perf_counter() - started
        async with jesus.Client(url, name="emitter") as client:
            client.resolver.refresh = args.refresh
            await client.emit("bench.tick", {"id": 1})  # cold: looks the listeners up
            before = traffic.mark()
            sent, stall = 0, 0.0
            t0 = last = time.perf_counter()
            stop = t0 + args.duration
            while last < stop:
                await client.emit("bench.tick", {"id": sent})
                now = time.perf_counter()
                stall = max(stall, now - last)
                last = now
                sent += 1
            out["emits_s"] = sent / (last - t0)
            out["stall_ms"] = stall * 1000
            out["emitter_bps"] = traffic.since(before) / (last - t0)

    # One instance's heartbeat: a renewal, and a check (both after a first one).
    await backend.register(beating, TTL)
    at = traffic.mark()
    await backend.register(beating, TTL)
    out["renewal_b"] = traffic.since(at)
    await backend.is_registered(beating.service, beating.instance_id)
    at = traffic.mark()
    await backend.is_registered(beating.service, beating.instance_id)
    out["check_b"] = traffic.since(at)
    # per instance and cycle of TTL/3 (rounded up to whole checks): one renewal, the rest checks
    checks = max(0, int(-(-(TTL / 3) // CHECK_EVERY)) - 1)
    cycle = (checks + 1) * CHECK_EVERY
    out["all_mbps"] = out["n"] * (out["renewal_b"] + checks * out["check_b"]) / cycle / 1e6

    # One big service, a tenth of it gone without deregistering.
    big = [record("big", f"i{i:06d}") for i in range(n)]
    gone = max(1, n // 10)
    await populate(backend, big[gone:], ttl=600)
    await populate(backend, big[:gone], ttl=1.0)
    await backend.list_instances("big")  # a reader that had read them all before
    await anyio.sleep(4.0)  # past their expiry in memcached too (TTL + 2 s, whole seconds)
    for label in ("gone_first", "gone_next"):
        at, t = traffic.mark(), time.perf_counter()
        listed = await backend.list_instances("big")
        out[f"{label}_s"] = time.perf_counter() - t
        out[f"{label}_mb"] = (traffic.since(at)) / 1e6
        assert len(listed) == n - gone, (len(listed), n - gone)
    traffic.close()
    await backend.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,1000,5000", help="values of N, comma-separated")
    parser.add_argument("--duration", type=float, default=2.0, help="seconds of emitting per N")
    parser.add_argument("--refresh", type=float, default=0.5, help="the emitter's cache refresh")
    parser.add_argument("--repeat", type=int, default=1, help="runs per N; medians reported")
    parser.add_argument("--quick", action="store_true", help="N = 10, 100, briefly (smoke)")
    parser.add_argument("--proxy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy:
        anyio.run(proxy, *(int(p) for p in args.proxy.split(",")))
        return 0
    if args.quick:
        args.sizes, args.duration = "10,100", 0.3
    sizes = [int(s) for s in args.sizes.split(",")]
    memcached, port = start_memcached()
    counter, listen, control = start_proxy(port)
    rows = []
    try:
        for n in sizes:
            runs = []
            for _ in range(args.repeat):
                runs.append(anyio.run(measure, listen, control, n, args))
                print(f"N={n}: {runs[-1]}", file=sys.stderr, flush=True)
            rows.append({key: statistics.median(r[key] for r in runs) for key in runs[0]})
    finally:
        for proc in (counter, memcached):
            proc.terminate()
            proc.wait(timeout=10)
    print(
        f"\ncommand: python benchmarks/registry_scale.py --sizes {args.sizes} "
        f"--duration {args.duration} --refresh {args.refresh} --repeat {args.repeat}\n"
    )
    print(
        "| N | serve() start | warm emits/s | max emitter stall | emitter registry traffic "
        "| renewal | check | all heartbeats | 10% gone: first listing | next listing |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,.0f} | {r['start_s'] * 1000:,.0f} ms | {r['emits_s']:,.0f} "
            f"| {r['stall_ms']:,.1f} ms | {r['emitter_bps'] / 1e3:,.1f} KB/s "
            f"| {r['renewal_b'] / 1e3:,.1f} KB | {r['check_b'] / 1e3:,.2f} KB "
            f"| {r['all_mbps']:,.2f} MB/s "
            f"| {r['gone_first_s'] * 1000:,.0f} ms, {r['gone_first_mb']:,.2f} MB "
            f"| {r['gone_next_s'] * 1000:,.0f} ms, {r['gone_next_mb']:,.2f} MB |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
