"""What the otel plugin costs per call: sequential tcp+msgpack calls (client and server in one
process, so both ends' middleware is counted) without the plugin, with it and no SDK
configured, and with it recording into an SDK (spans batched to an exporter that drops them,
metrics aggregated in memory); and the plugin's own work per call with no SDK, both ends,
without a socket, and that of counting a call's bytes (which the transports do, plugin or not).

    .venv/bin/python benchmarks/otel.py --repeat 3 --duration 2

Variants run interleaved, --repeat times each; the table gives medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import types
from collections.abc import Sequence
from typing import Any

import anyio

os.environ["JESUS_LOAD_PLUGINS"] = "tcp,otel"

import jesus
from jesus.middleware import CallInfo
from jesus.plugins import build_catalog, get_plugin_manager
from jesus.protocol.frames import HEADER_SIZE
from jesus.transport import OutgoingCall, PreparedCall
from jesus.transport.traffic import SERVER, TRAFFIC, UNCOUNTED
from jesus_otel import TELEMETRY

VARIANTS = ("no plugin", "plugin, no SDK", "plugin + SDK")


def catalogs() -> dict[str, Any]:
    pm, failures = get_plugin_manager()
    with_plugin = build_catalog(pm, failures)
    pm.unregister(name="otel")
    return {"no plugin": build_catalog(pm, failures), "plugin": with_plugin}


def sdk() -> tuple[Any, Any]:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    return tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()])


def service() -> jesus.Service:
    svc = jesus.Service("bench", channel="tcp+msgpack")

    @svc.method(request={"type": "object"}, response={"type": "object"})
    async def echo(data: Any) -> Any:
        return data

    return svc


async def calls_per_second(catalog: Any, duration: float) -> float:
    registry = f"embedded://{tempfile.mkdtemp()}/registry"
    async with (
        jesus.serve(service(), registry=registry, catalog=catalog),
        jesus.Client(registry, catalog=catalog) as client,
    ):
        for _ in range(200):  # warm up: connection, plans, caches
            await client.call("bench.echo", {"n": 1})
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < duration:
            for _ in range(100):
                await client.call("bench.echo", {"n": n})
            n += 100
        return n / (time.perf_counter() - started)


async def middleware_ns(calls: int = 50_000, rounds: int = 5) -> float:
    """Both ends of the plugin with no SDK around a call that does nothing, less that call
    alone: the best of `rounds`."""
    meta = jesus.Meta()
    info = CallInfo("bench", "echo", None, meta, jesus.ResponseMode.RESPONSE, "tcp+msgpack")

    async def nothing(call: CallInfo) -> Any:
        return None

    async def bare() -> None:
        for _ in range(calls):
            await nothing(info)
            await nothing(info)

    async def wrapped() -> None:
        for _ in range(calls):
            await TELEMETRY.client(info, nothing)
            await TELEMETRY.server(info, nothing)

    best = {bare: float("inf"), wrapped: float("inf")}
    for _ in range(rounds):
        for run in best:
            started = time.perf_counter()
            await run()
            best[run] = min(best[run], (time.perf_counter() - started) / calls * 1e9)
    return best[wrapped] - best[bare]


def counting_ns(calls: int = 200_000, rounds: int = 5) -> float:
    """What counting a call's bytes adds on both ends, as the transports do it whether or not
    the plugin is loaded: a meter lookup at the client, an integer add per message (request
    and response, each end), less the same loop without: the best of `rounds`."""
    meta = jesus.Meta()
    channel = types.SimpleNamespace(name="tcp+msgpack+none")
    call = OutgoingCall("tcp://x", channel, "bench.echo", None, meta, meta.mode, None)
    prepared = PreparedCall("bench.echo", None, meta, None)
    prepared.meter = TRAFFIC.meter(SERVER, channel.name, "bench.echo")

    class Reply:  # slotted, as the transports' replies are
        __slots__ = ("meter",)

    reply = Reply()
    reply.meter = UNCOUNTED
    frame, size = b"x" * 40, 30

    def bare() -> None:
        for _ in range(calls):
            len(frame)

    def counted() -> None:
        for _ in range(calls):
            meter = call.meter()  # client: the request, then its response
            meter.sent += len(frame) - HEADER_SIZE
            meter.received += size
            served = prepared.meter  # server: the runner, then the reply
            served.received += size
            reply.meter = served
            reply.meter.sent += len(frame) - HEADER_SIZE

    best = {bare: float("inf"), counted: float("inf")}
    for _ in range(rounds):
        for run in best:
            started = time.perf_counter()
            run()
            best[run] = min(best[run], (time.perf_counter() - started) / calls * 1e9)
    return best[counted] - best[bare]


async def main(repeat: int, duration: float) -> None:
    tables = catalogs()
    providers = sdk()
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for _ in range(repeat):
        for variant in VARIANTS:
            # No SDK: the global providers, of which none is set in this process.
            if variant == "plugin + SDK":
                TELEMETRY.use(*providers)
            else:
                TELEMETRY.use()
            catalog = tables["no plugin" if variant == "no plugin" else "plugin"]
            rates[variant].append(await calls_per_second(catalog, duration))
    TELEMETRY.use()
    bare = statistics.median(rates["no plugin"])
    print(f"{'variant':<16} {'calls/s':>9} {'us/call':>8} {'+us/call':>9} {'vs none':>8}")
    for variant in VARIANTS:
        rate = statistics.median(rates[variant])
        extra = 1e6 / rate - 1e6 / bare
        print(f"{variant:<16} {rate:>9.0f} {1e6 / rate:>8.1f} {extra:>+9.2f} {rate / bare:>8.3f}")
    alone = await middleware_ns()
    print(f"\nthe plugin's own work with no SDK, client and server ends: {alone:.0f} ns/call")
    print(f"counting the bytes of a call (always on), both ends: {counting_ns():.0f} ns/call")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    anyio.run(main, args.repeat, args.duration)
