"""The contract between the core and a transport plugin, as protocols only.

Server side: `Transport.listen` gets a `CallHandler` (the core's dispatcher) and serves it
through a `jesus.transport.CallRunner`, which runs every call's life; the transport makes one
`Reply` per call, the object the runner answers through. Client side: a `TransportClient`
carries `OutgoingCall`s that the core planned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from jesus.limits import Limits
from jesus.transport.traffic import UNCOUNTED, Meter

if TYPE_CHECKING:
    import ssl

    from anyio.abc import TaskGroup

    from jesus.codecs import Codec
    from jesus.compression import Compression
    from jesus.errors import CallError
    from jesus.messages import Meta, ResponseMode
    from jesus.security.caller import Caller
    from jesus.transport.keys import TransportKeys
    from jesus.transport.outgoing import OutgoingCall


@dataclass(frozen=True)
class TransportOptions:
    limits: Limits = field(default_factory=Limits)
    ssl_context: ssl.SSLContext | None = None
    codecs: Mapping[str, Codec] = field(default_factory=dict)
    compressions: Mapping[str, Compression] = field(default_factory=dict)
    # This end's key pair and trust, for a transport declared `keyed` (jesus.transport.keys).
    keys: TransportKeys | None = None


@dataclass(slots=True)
class PreparedCall:
    """A request the handler accepted: its method exists, its mode fits, its data is valid."""

    name: str  # service.method
    data: Any
    meta: Meta
    # Absolute deadline on the anyio clock (from meta.deadline_ms); the runner enforces it and
    # nested calls inherit it.
    deadline: float | None
    entry: Any = None  # the handler's own record of the method; opaque to transports
    caller: Any = None  # jesus.security.caller.Caller: who it is proven to come from
    seal: Any = None  # jesus.sealing.seal.SealedCall of a sealed call: its answers are sealed
    # An ack call acked once the handler succeeded, not before it ran: a relay's ack then
    # means the next hop accepted the call, so nothing it acked can be lost on the way.
    ack_after_run: bool = False
    # The request's decoded size in bytes (`Session.admit`'s `size`), for middleware to see.
    size: int = 0
    # Called by the runner once the call ended, however it ended (a bulkhead's slot).
    release: Callable[[], None] | None = None
    # Where the bytes of its request and answers are counted (the handler's, per method).
    meter: Meter = UNCOUNTED


class CallHandler(Protocol):
    """What serves calls: the core's dispatcher. Transports reach it through a CallRunner,
    and directly only for what HTTP shows of it (a method's mode, the description)."""

    def prepare(
        self, method: str, raw_meta: Any, data: Any, mode: ResponseMode, caller: Caller
    ) -> PreparedCall:
        """Check a decoded request from `caller`; raises the CallError to answer with."""

    async def run(self, call: PreparedCall) -> Any:
        """Run the handler; returns its checked result or raises a CallError."""

    def open_stream(self, call: PreparedCall) -> AsyncIterator[Any]:
        """The handler's checked items; failures come out as CallError."""

    def declared_mode(self, method: str) -> ResponseMode | None:
        """The mode `method` (service.method) is declared with, None if it is not served."""

    def describe(self) -> dict[str, Any]:
        """Service name -> what it serves (methods, listeners, emits), as published."""


class Reply(Protocol):
    """Where the answers of one admitted call go. A transport makes one per call; the runner
    calls `ack` (ack mode, before the handler runs), then exactly one of `result`, `error`
    or (streams) `item`... `end`, and finally `close`, whatever happened."""

    # HTTP answers every request, so it is told of refused noResponse calls too, and acks them.
    always_answers: ClassVar[bool]
    # True until the call got its final answer, or the peer cancelled it.
    open: bool
    # Where the bytes of its answers are added, as written (`meter.sent`): set by the runner
    # once the call is admitted, UNCOUNTED until then.
    meter: Meter

    def ack(self) -> None: ...

    def result(self, value: Any) -> Awaitable[None] | None:
        """Send the result; raises TooLarge or ValueError when it cannot be encoded. Returns
        what to await before the call is over (a full write buffer), or None: most answers
        need no wait, and a coroutine per call would cost more than the rest of the send."""

    def error(self, error: CallError) -> None: ...

    def item(self, value: Any) -> Awaitable[None] | None:
        """Send one stream item; returns what to await first (no credit left, a full write
        buffer) or None."""

    def end(self) -> None: ...

    def close(self) -> None:
        """The call is over: release what the transport keeps for it."""


class Server(Protocol):
    """A bound server. `endpoint` is what the registry advertises (e.g. tcp://127.0.0.1:4000)."""

    endpoint: str

    async def serve(self) -> None:
        """Serve until cancelled or closed."""

    async def aclose(self) -> None:
        """Stop accepting, answer the calls in flight, then close."""


class TransportClient(Protocol):
    """Sends calls to endpoints, pooling connections as it sees fit.

    A client whose `stream()` itself raises DeadlineExceeded once `call.deadline` passes (and
    cancels the stream at the server) says so with a class attribute `stream_deadlines =
    True`; the core then spares a cancel scope per item. Without it, the core applies the
    deadline to each wait for an item."""

    async def request(self, call: OutgoingCall) -> Any:
        """Send one call. For RESPONSE return the result; for ACK and NO_RESPONSE, None.
        Raise a CallError (Unavailable when the peer cannot be reached, ConnectionLost when
        it went away with the call in flight)."""

    def stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        """Open a server stream; leaving the iteration early cancels it at the server."""

    async def aclose(self) -> None: ...


class ProvidedConnection(Protocol):
    """The connection of a process that offers services over the connection it opened
    (PROTOCOL.md, "Node daemon"): once accepted, calls go to it, the server's side being
    the client of the calls."""

    @property
    def usable(self) -> bool: ...

    async def request(self, call: OutgoingCall) -> Any: ...

    def open_stream(self, call: OutgoingCall) -> AsyncIterator[Any]: ...

    async def wait_closed(self) -> None:
        """Return once the provider is gone."""


class ProviderLink(Protocol):
    """What a transport hands a handler's `provide` for a connection whose HELLO offers
    services: nothing is answered before `accept()`."""

    async def accept(self) -> ProvidedConnection:
        """Answer the provider's HELLO: from now on calls may go to it."""


class AcceptsProviders(Protocol):
    """A CallHandler that also takes providers (the node daemon's). A stream transport
    whose peer's HELLO carries `provide` calls `provide` instead of serving calls from it."""

    async def provide(self, hello: dict[str, Any], link: ProviderLink, caller: Caller) -> None:
        """Serve what `hello["provide"]` offers until the provider is gone. Raise a CallError
        to refuse it: the transport tells the provider (an ERROR on stream 0) and closes."""


class Transport(Protocol):
    """A transport plugin's contribution: one per URL scheme (`tcp`, `unix`, ...).

    A transport that secures itself with `TransportOptions.keys` when given them (zmq's
    CURVE) says so with a class attribute `keyed = True`: given sealing credentials, the
    core counts it as protected, like one with TLS."""

    scheme: str
    # Response modes this transport carries (UDP cannot stream, for instance).
    modes: frozenset[ResponseMode]
    # Whether it protects its traffic with TLS when given an ssl_context.
    tls: bool
    # Whether it is reachable only from this machine, guarded by file permissions (unix).
    local: bool

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> Server:
        """Bind (`bind` is transport-specific, None picks a free local address)."""

    def client(self, options: TransportOptions, task_group: TaskGroup) -> TransportClient:
        """A client whose background work (readers, keep-alives) runs in `task_group`."""
