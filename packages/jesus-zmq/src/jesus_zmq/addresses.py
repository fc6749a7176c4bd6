"""Endpoints: `zmq://host:port` in the registry (`?curve=KEY` when the server speaks CURVE:
its public key, z85 as zeromq writes keys, URL-quoted), `tcp://host:port` to libzmq."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from zmq.utils import z85

from jesus.errors import ConfigurationError

Z85_KEY_SIZE = 40  # a 32-byte key in z85


def zmq_address(endpoint: str) -> str:
    """The libzmq address of a `zmq://host:port` endpoint."""
    parts = urlsplit(endpoint)
    if parts.scheme != "zmq" or parts.hostname is None or parts.port is None:
        raise ConfigurationError(f"{endpoint!r} is not a zmq://host:port endpoint")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"tcp://{host}:{parts.port}"


def server_key(endpoint: str) -> bytes | None:
    """The CURVE public key (32 bytes) an endpoint names, None when it names none."""
    keys = parse_qs(urlsplit(endpoint).query).get("curve")
    if not keys:
        return None
    text = keys[0].encode()
    if len(keys) != 1 or len(text) != Z85_KEY_SIZE:
        raise ConfigurationError(f"{endpoint!r}: curve must be one {Z85_KEY_SIZE}-character key")
    try:
        return z85.decode(text)
    except (ValueError, KeyError):
        raise ConfigurationError(f"{endpoint!r}: the curve key is not z85") from None


def parse_bind(bind: str | None) -> tuple[str, int]:
    """`host:port`, `:port` or None (127.0.0.1 on a free port, 0)."""
    if not bind:
        return "127.0.0.1", 0
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"zmq bind address {bind!r} must be host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def endpoint_of(host: str, port: int, curve: bytes | None = None) -> str:
    endpoint = f"zmq://[{host}]:{port}" if ":" in host else f"zmq://{host}:{port}"
    if curve is not None:
        endpoint += "?" + urlencode({"curve": z85.encode(curve).decode()})
    return endpoint
