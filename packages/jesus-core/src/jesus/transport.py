"""The contract between the core and a transport plugin.

A transport moves calls between a `CallDispatcher` (server side, in the core) and a
`TransportClient` (client side). Codec and compression objects are handed to it so that each
transport applies them its own way (per connection in TCP, per request in HTTP).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from jesus.limits import Limits

if TYPE_CHECKING:
    import ssl

    from anyio.abc import TaskGroup

    from jesus.codecs import Codec
    from jesus.compression import Compression
    from jesus.messages import Meta, ResponseMode
    from jesus.runtime.dispatcher import CallDispatcher


@dataclass(frozen=True)
class TransportOptions:
    limits: Limits = field(default_factory=Limits)
    ssl_context: ssl.SSLContext | None = None
    codecs: Mapping[str, Codec] = field(default_factory=dict)
    compressions: Mapping[str, Compression] = field(default_factory=dict)


class Listener(Protocol):
    """A bound server. `endpoint` is what the registry advertises (e.g. tcp://127.0.0.1:4000)."""

    endpoint: str

    async def serve(self) -> None:
        """Serve until cancelled; then stop accepting and drain in-flight calls."""

    async def aclose(self) -> None: ...


class TransportClient(Protocol):
    """Sends calls to endpoints, pooling connections as it sees fit."""

    async def request(
        self,
        endpoint: str,
        codec: Codec,
        compression: Compression,
        method: str,
        data: Any,
        meta: Meta,
        mode: ResponseMode,
    ) -> Any:
        """Send one call. For RESPONSE return the result; for ACK and NO_RESPONSE, None.
        Raise a `CallError` subclass on failure (Unavailable when the peer cannot be reached)."""

    def stream(
        self,
        endpoint: str,
        codec: Codec,
        compression: Compression,
        method: str,
        data: Any,
        meta: Meta,
    ) -> AsyncIterator[Any]:
        """Open a server stream; leaving the iteration early cancels it at the server."""

    async def aclose(self) -> None: ...


class Transport(Protocol):
    """A transport plugin's contribution: one per URL scheme (`tcp`, `unix`, ...)."""

    scheme: str
    # Response modes this transport carries (UDP cannot stream, for instance).
    modes: frozenset[ResponseMode]

    async def listen(
        self, dispatcher: CallDispatcher, bind: str | None, options: TransportOptions
    ) -> Listener:
        """Bind (`bind` is transport-specific, None picks a free local address)."""

    def client(self, options: TransportOptions, task_group: TaskGroup) -> TransportClient:
        """A client whose background work (readers, keep-alives) runs in `task_group`."""
