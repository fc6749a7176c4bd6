"""Prometheus metrics over HTTP (`serve(metrics="HOST:PORT")`, `jesus serve --metrics`).

The process's global MeterProvider becomes an OpenTelemetry SDK one with a Prometheus reader
(`opentelemetry-exporter-prometheus`), so the names are the conventions' as that exporter
translates them (`rpc.server.call.duration` in seconds -> `rpc_server_call_duration_seconds`),
beside whatever else the process records into OpenTelemetry and prometheus-client's default
registry. prometheus-client serves them at `/metrics` from a thread of its own.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import anyio
import prometheus_client
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from jesus.errors import ConfigurationError
from jesus.plugins import Catalog
from jesus_otel.telemetry import Telemetry, records

_lock = threading.Lock()
_made: list[MeterProvider] = []  # the provider made here: one per process


@dataclass
class MetricsServer:
    """A running /metrics endpoint; `url` is where to scrape it."""

    url: str
    _httpd: Any
    _thread: threading.Thread

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._stop)

    def _stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:9464`; an empty HOST: every interface) -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"metrics address {address!r} must be HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or "0.0.0.0", int(port)


def meter_provider(service_name: str | None = None) -> MeterProvider:
    """The global MeterProvider, with a Prometheus reader: made and set on first use. A
    provider set before by someone else cannot take the reader (SDK providers get their
    readers when made), so that is refused, saying what to do instead."""
    with _lock:
        if _made:
            return _made[0]
        current = metrics.get_meter_provider()
        if records(current):
            raise ConfigurationError(
                "a MeterProvider is already set in this process: give it "
                "opentelemetry.exporter.prometheus.PrometheusMetricReader() and serve "
                "prometheus_client.start_http_server() yourself, or leave out --metrics"
            )
        attributes = {}
        if service_name and not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = service_name
        provider = MeterProvider(
            metric_readers=[PrometheusMetricReader()], resource=Resource.create(attributes)
        )
        metrics.set_meter_provider(provider)
        _made.append(provider)
        return provider


async def serve_metrics(
    address: str, *, service_name: str | None = None, catalog: Catalog | None = None
) -> MetricsServer:
    """Serve Prometheus metrics at http://HOST:PORT/metrics until `aclose()`. With `catalog`,
    refuses when its middleware has no Telemetry (the otel plugin is not loaded): the
    endpoint would show no call."""
    host, port = parse_address(address)
    if catalog is not None and not any(isinstance(m, Telemetry) for m in catalog.middleware):
        raise ConfigurationError(
            "metrics need the otel plugin, which is not loaded (is it left out of "
            "JESUS_LOAD_PLUGINS?)"
        )
    meter_provider(service_name)
    try:
        httpd, thread = prometheus_client.start_http_server(port, addr=host)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {address}: {exc.strerror or exc}"
        ) from None
    bound_host, bound_port = str(httpd.server_address[0]), int(httpd.server_address[1])
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    return MetricsServer(f"http://{shown}:{bound_port}/metrics", httpd, thread)
