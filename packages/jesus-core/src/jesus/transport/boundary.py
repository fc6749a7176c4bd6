"""The library exceptions a transport meets, and what they become (see errors.map_exceptions).

ssl.SSLError and socket errors are OSErrors; anyio raises its own when a stream breaks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio

from jesus.errors import HandshakeRefused, JesusError, Unavailable
from jesus.transport.tls import explain_tls

# What a byte stream raises once the peer is gone (caught where the transport reads or writes).
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
# What opening a connection or socket raises when the peer cannot be reached.
CONNECT_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


@contextlib.contextmanager
def connect_errors(endpoint: str) -> Iterator[None]:
    """`with connect_errors(endpoint): await connect(...)` raises Unavailable instead,
    saying why when TLS refused the connection."""
    try:
        yield
    except JesusError:
        raise
    except CONNECT_ERRORS as exc:
        raise unreachable(f"cannot connect to {endpoint}", exc) from exc


def unreachable(what: str, exc: BaseException, corrid: str | None = None) -> Unavailable:
    """The error of a connection that broke before a call was sent: HandshakeRefused when
    TLS refused it (certificates do not change between attempts), else Unavailable."""
    refused = explain_tls(exc)
    if refused is not None:
        return HandshakeRefused(f"{what}: {refused}", corrid=corrid)
    return Unavailable(f"{what}: {why_broken(exc)}", corrid=corrid)


def why_broken(exc: BaseException) -> str:
    """What a broken stream or failed connect says, TLS refusals explained."""
    return explain_tls(exc) or str(exc) or type(exc).__name__
