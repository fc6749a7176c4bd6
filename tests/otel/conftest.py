"""The otel plugin (jesus_otel.TELEMETRY, loaded through its entry point like any plugin)
pointed at an SDK's in-memory exporter and metric reader for one test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from jesus_otel import TELEMETRY


@dataclass
class Recorded:
    tracer_provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        """The ended spans, by `name` if given."""
        found = list(self.exporter.get_finished_spans())
        return found if name is None else [s for s in found if s.name == name]

    def span(self, name: str, kind: Any = None) -> ReadableSpan:
        found = [s for s in self.spans(name) if kind is None or s.kind == kind]
        assert len(found) == 1, [(s.name, s.kind) for s in self.spans()]
        return found[0]

    def points(self, metric: str) -> list[Any]:
        """The data points of `metric` as collected now."""
        data = self.reader.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for m in scope.metrics
            if m.name == metric
            for point in m.data.data_points
        ]

    def point(self, metric: str, wanted: dict[str, Any]) -> Any:
        """The one data point of `metric` whose attributes include `wanted`."""
        found = [
            p
            for p in self.points(metric)
            if all(p.attributes.get(k) == v for k, v in wanted.items())
        ]
        assert len(found) == 1, (metric, wanted, [dict(p.attributes) for p in self.points(metric)])
        return found[0]


@pytest.fixture
def otel() -> Iterator[Recorded]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    TELEMETRY.use(tracer_provider, meter_provider)
    try:
        yield Recorded(tracer_provider, exporter, reader)
    finally:
        TELEMETRY.use()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.fixture
def no_sdk() -> Iterator[None]:
    """The providers of the API package alone, as in a process that configured no SDK."""
    TELEMETRY.use(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())
    try:
        yield
    finally:
        TELEMETRY.use()
