"""Endpoints: `tcp://host:port` (`?tls=1` when the server requires TLS) and `unix:///path`."""

from __future__ import annotations

import os
import secrets
import tempfile
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from jesus.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""
    tls: bool = False

    def endpoint(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}" + ("?tls=1" if self.tls else "")


def parse_endpoint(endpoint: str) -> Address:
    parts = urlsplit(endpoint)
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError(f"unix endpoint {endpoint!r} has no path")
        return Address("unix", path=parts.path)
    if parts.scheme == "tcp":
        if parts.hostname is None or parts.port is None:
            raise ConfigurationError(f"tcp endpoint {endpoint!r} must be tcp://host:port")
        tls = parse_qs(parts.query).get("tls", ["0"])[0] == "1"
        return Address("tcp", host=parts.hostname, port=parts.port, tls=tls)
    raise ConfigurationError(f"endpoint {endpoint!r} is neither tcp:// nor unix://")


def parse_tcp_bind(bind: str | None) -> tuple[str, int]:
    """`host:port`, `:port` or None (127.0.0.1 on a free port)."""
    if not bind:
        return "127.0.0.1", 0
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"tcp bind address {bind!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def default_unix_path() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return os.path.join(base, f"jesus-{os.getpid()}-{secrets.token_hex(4)}.sock")
