"""OpenTelemetry for jesus: spans for every call (RPC conventions) and event (messaging
conventions) on both ends, the trace context carried in the meta over every transport, and
metrics; nearly free while no OpenTelemetry SDK is configured. `jesus_otel.prometheus`
serves the metrics to Prometheus (`jesus serve --metrics HOST:PORT`)."""

from jesus_otel.plugin import TELEMETRY
from jesus_otel.telemetry import Telemetry

__all__ = ["TELEMETRY", "Telemetry"]
