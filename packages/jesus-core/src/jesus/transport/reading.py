"""What a server does with a connection whose peer it stops reading from."""

from __future__ import annotations

from typing import Any


def stop_reading_ahead(stream: Any) -> None:
    """Make a stream read only while a `receive()` waits. Call it where a server stops
    reading from a peer (back-pressure): anyio's asyncio listener hands out connections that
    read ahead into an unbounded queue until a `receive()` has to wait (its `connect_tcp`
    pauses them; `accept` does not), so a peer that sends without ever reading would fill
    the server's memory past every limit. Connections that never need it keep reading ahead,
    which saves two system calls a read. Other backends read on demand already."""
    while (inner := getattr(stream, "transport_stream", None)) is not None:
        stream = inner  # TLS over the socket stream
    transport = getattr(stream, "_transport", None)
    pause = getattr(transport, "pause_reading", None)
    if pause is not None and not transport.is_closing():  # type: ignore[union-attr]
        pause()
