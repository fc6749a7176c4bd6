"""Endpoints: `zmq://host:port` in the registry, `tcp://host:port` to libzmq."""

from __future__ import annotations

from urllib.parse import urlsplit

from jesus.errors import ConfigurationError


def zmq_address(endpoint: str) -> str:
    """The libzmq address of a `zmq://host:port` endpoint."""
    parts = urlsplit(endpoint)
    if parts.scheme != "zmq" or parts.hostname is None or parts.port is None:
        raise ConfigurationError(f"{endpoint!r} is not a zmq://host:port endpoint")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{parts.port}"


def parse_bind(bind: str | None) -> tuple[str, int]:
    """`host:port`, `:port` or None (127.0.0.1 on a free port, 0)."""
    if not bind:
        return "127.0.0.1", 0
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"zmq bind address {bind!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def endpoint_of(host: str, port: int) -> str:
    return f"zmq://[{host}]:{port}" if ":" in host else f"zmq://{host}:{port}"
