"""CURVE with the node's transport keys (`jesus.transport.keys`): ZMTP's encryption and key
authentication, and above it each end's certificate, checked against the sealing CA.

The CURVE handshake proves that each end holds the secret of its public key; the ZAP
handler then hands the client's key to the server with each of its messages (`User-Id`).
What proves whose key it is travels in ZMTP metadata, encrypted by the handshake: the
`X-Jesus-Proof` property, the certificate chain and its signature over the key. The server
checks a client's on its first message and refuses it (ERROR `PERMISSION_DENIED`) unless
the CA signed it; the client checks the server's on its first answer, and that its
certificate names the service it calls."""

from __future__ import annotations

import contextlib
import itertools
import os
from typing import Any

from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

import zmq
from jesus.security.caller import Caller
from jesus.transport.keys import CLIENT, SERVER, KeyRefused, TransportKeys, Vouched

PROOF = "X-Jesus-Proof"

# What the client's socket monitor reports when a CURVE handshake fails, and what it means.
HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
WHY: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the CURVE handshake failed: the server does not "
    "hold the key its endpoint names (a stale or forged registry record?)",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "the CURVE handshake failed: the server does not "
    "speak CURVE",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "the server refused this client's CURVE key",
}


class _AdmitEveryKey:
    """The handshake proved the key; whose it is, the certificate proof tells (first message)."""

    def callback(self, domain: str, key: bytes) -> bool:
        return True


class _Zap:
    """The one ZAP handler of the process's zmq context, from the first CURVE server on.
    libzmq sends it every handshake of a socket with a ZAP domain. It is never stopped:
    libzmq frees a closed socket's inproc address in the background, so a handler started
    again soon after could not bind it."""

    def __init__(self) -> None:
        self._auth: ThreadAuthenticator | None = None
        self._names = (f"jesus-{os.getpid()}-{n}" for n in itertools.count())

    def open(self) -> str:
        """A ZAP domain for a new server socket."""
        if self._auth is None:
            self._auth = ThreadAuthenticator(zmq.Context.instance())
            self._auth.start()
        domain = next(self._names)
        self._auth.configure_curve_callback(domain, _AdmitEveryKey())
        return domain

    def close(self, domain: str) -> None:
        if self._auth is not None:
            self._auth.credentials_providers.pop(domain, None)


zap = _Zap()


def serve_curve(sock: zmq.Socket[Any], keys: TransportKeys) -> str:
    """Make a ROUTER socket (before it binds) a CURVE server; returns its ZAP domain."""
    sock.setsockopt(zmq.CURVE_SERVER, 1)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.METADATA, f"{PROOF}:{keys.vouch(SERVER)}".encode())
    domain = zap.open()
    sock.setsockopt(zmq.ZAP_DOMAIN, domain.encode())
    return domain


def connect_curve(sock: zmq.Socket[Any], keys: TransportKeys, server: bytes) -> None:
    """Make a DEALER socket (before it connects) a CURVE client of the server key `server`."""
    sock.setsockopt(zmq.CURVE_SERVERKEY, server)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.METADATA, f"{PROOF}:{keys.vouch(CLIENT, server)}".encode())


def client_of(frame: zmq.Frame, keys: TransportKeys) -> Caller:
    """The proven Caller of the connection a message came by; raises KeyRefused."""
    key = z85.decode(property_of(frame, "User-Id") or b"")
    if len(key) != len(keys.public):
        raise KeyRefused("the connection has no CURVE client key")
    vouched = keys.check(property_of(frame, PROOF), CLIENT, key, keys.public)
    address = (property_of(frame, "Peer-Address") or b"").decode(errors="replace")
    return Caller(name=vouched.name, proof="curve", address=address)


def server_of(frame: zmq.Frame, keys: TransportKeys, server: bytes) -> Vouched:
    """Who the server's certificate says holds `server`, the key this client connected to;
    raises KeyRefused."""
    return keys.check(property_of(frame, PROOF), SERVER, server)


def property_of(frame: zmq.Frame, name: str) -> bytes | None:
    """A property of the connection `frame` came by (zmq_msg_gets), None when unset."""
    with contextlib.suppress(zmq.ZMQError):  # not set on this connection
        value = frame.get(name)
        return value.encode() if isinstance(value, str) else bytes(value)
    return None
