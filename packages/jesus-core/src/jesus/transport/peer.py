"""Who is at the other end of an accepted stream, as the transport can prove it: the
verified TLS client certificate, or the kernel's credentials of a unix socket peer."""

from __future__ import annotations

import socket
import struct
from typing import Any

from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from jesus.security.caller import Caller, common_name

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def peer_of(stream: Any) -> Caller:
    """The Caller of a stream a listener accepted (TLS or not, tcp or unix)."""
    address = _address(stream.extra(SocketAttribute.remote_address, None))
    certificate = stream.extra(TLSAttribute.peer_certificate, None)
    name = common_name(certificate)
    if name is not None:
        return Caller(name=name, proof="tls", address=address)
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if raw is not None and raw.family == socket.AF_UNIX and hasattr(socket, "SO_PEERCRED"):
        pid, uid, _ = _UCRED.unpack(
            raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
        return Caller(proof="unix", uid=uid, pid=pid, address=address or "unix socket")
    return Caller(address=address)


def _address(raw: Any) -> str:
    if isinstance(raw, tuple) and len(raw) >= 2:
        return f"{raw[0]}:{raw[1]}"
    return str(raw) if raw else ""
