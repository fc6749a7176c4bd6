"""Where other machines reach a server: a listener bound to every interface (0.0.0.0, as in
a container) says so in its endpoint, which nobody can connect to; the registry gets the
advertised host instead."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def advertised(endpoint: str, host: str | None) -> str:
    """`endpoint` with its host replaced by `host` (None: as it is). Endpoints with no host
    (unix sockets) are left alone."""
    if not host:
        return endpoint
    parts = urlsplit(endpoint)
    if parts.hostname is None or parts.port is None:
        return endpoint
    shown = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=f"{shown}:{parts.port}"))
