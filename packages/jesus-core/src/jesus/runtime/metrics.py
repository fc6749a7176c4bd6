"""`serve(metrics="HOST:PORT")`: Prometheus metrics, which the jesus-otel plugin serves."""

from __future__ import annotations

from typing import Any

from jesus.errors import ConfigurationError
from jesus.plugins import Catalog


async def open_metrics(address: str, service_name: str, catalog: Catalog) -> Any:
    """Start the /metrics endpoint: an object with `url` and `async aclose()`."""
    try:
        from jesus_otel import prometheus
    except ImportError as exc:
        raise ConfigurationError(
            f"serving metrics needs jesus-otel with Prometheus: pip install "
            f"'jesus-core[prometheus]' ({exc})"
        ) from None
    return await prometheus.serve_metrics(address, service_name=service_name, catalog=catalog)
