"""The library exceptions a transport meets, and what they become (see errors.map_exceptions).

ssl.SSLError and socket errors are OSErrors; anyio raises its own when a stream breaks.
"""

from __future__ import annotations

import contextlib

import anyio

from jesus.errors import Unavailable, map_exceptions

# What a byte stream raises once the peer is gone (caught where the transport reads or writes).
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
# What opening a connection or socket raises when the peer cannot be reached.
CONNECT_ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


def connect_errors(endpoint: str) -> contextlib.AbstractContextManager[None]:
    """`with connect_errors(endpoint): await connect(...)` raises Unavailable instead."""
    return map_exceptions({CONNECT_ERRORS: Unavailable}, f"cannot connect to {endpoint}")
