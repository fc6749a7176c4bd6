"""What every server does first with a connection it accepted."""

from __future__ import annotations

from typing import Any


def read_on_demand(stream: Any) -> None:
    """Make an accepted stream read only when asked to. anyio's asyncio listener hands out
    connections that read ahead without limit until a `receive()` has to wait (its
    `connect_tcp` pauses them; `accept` does not), so a peer that sends without ever reading
    would fill the server's memory past every limit. Pause it, as `connect_tcp` does; a later
    `receive()` resumes it for as long as it waits. Other backends read on demand already."""
    while (inner := getattr(stream, "transport_stream", None)) is not None:
        stream = inner  # TLS over the socket stream
    transport = getattr(stream, "_transport", None)
    pause = getattr(transport, "pause_reading", None)
    if pause is not None and not transport.is_closing():  # type: ignore[union-attr]
        pause()
