"""Opening a registry backend from a URL."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from jesus.channel import missing
from jesus.registry.base import RegistryBackend

DEFAULT_REGISTRY = "embedded://"


def registry_url(url: str | None) -> str:
    return url or os.environ.get("JESUS_REGISTRY") or DEFAULT_REGISTRY


def open_registry(url: str | None, catalog: Any) -> RegistryBackend:
    """`embedded://`, `memcache://host:port,...` and whatever plugins add; default from
    JESUS_REGISTRY, else the embedded one."""
    url = registry_url(url)
    scheme = urlsplit(url).scheme
    factory = catalog.registries.get(scheme)
    if factory is None:
        raise missing("registry backend", scheme, catalog.registries)
    backend: RegistryBackend = factory(url)
    return backend
