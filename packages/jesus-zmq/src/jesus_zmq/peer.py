"""One client of a ROUTER socket, known by its routing id: the connection state a stream
transport keeps per accepted socket (a protocol connection, a session, what waits to go out).

A ROUTER socket reads every peer through one socket, so a server cannot stop reading one
peer the way a byte-stream server does. Instead, what must wait (a request decoded in a worker
thread, a noResponse call while the session is full) waits in this peer's backlog, in order,
and answers that a peer does not read wait in its outbox; past `write_buffer_size` of them the
peer is dropped (the libzmq pipe in between holds `SNDHWM` messages more)."""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Callable

import anyio

from jesus.errors import RemoteProtocolError
from jesus.messages import ResponseMode
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.protocol.frames import HEADER, HEADER_SIZE
from jesus.transport import Session, TransportOptions
from jesus.transport.futures import clock_factory
from jesus.transport.server_events import handle_server_event

log = logging.getLogger("jesus.zmq.server")
_NO_RESPONSE = ResponseMode.NO_RESPONSE

# Events waiting in a peer's backlog past which the server stops reading its socket.
MAX_BACKLOG = 1024

# (parts) -> False when the pipe is full; raises zmq.ZMQError when the peer is gone.
Sender = Callable[[list[bytes]], bool]


def one_frame(message: bytes) -> None:
    """Raise RemoteProtocolError unless `message` is exactly one frame: the mapping puts one
    frame in each ZMQ message, never a part of one, never two."""
    if len(message) < HEADER_SIZE:
        raise RemoteProtocolError(f"a message of {len(message)} bytes is not a frame")
    if HEADER.unpack_from(message)[0] != len(message) - HEADER_SIZE:
        raise RemoteProtocolError("the message is not exactly one frame")


class Peer:
    """Also the `FrameSink` its calls' replies write to (`jesus.transport.reply`)."""

    __slots__ = (
        "_backlog",
        "_barrier",
        "_clock",
        "_deferred",
        "_outbox_bytes",
        "_send",
        "_shrunk",
        "_stalled",
        "_task_group",
        "_write_limit",
        "drained",
        "gone",
        "identity",
        "last_seen",
        "outbox",
        "proto",
        "session",
    )

    def __init__(
        self,
        identity: bytes,
        session: Session,
        options: TransportOptions,
        send: Sender,
        stalled: Callable[[Peer], None],
        task_group: anyio.abc.TaskGroup,
    ) -> None:
        self.identity = identity
        self.session = session
        self.proto = ProtocolConnection(
            Role.SERVER,
            options.limits,
            codecs=dict(options.codecs),
            compressions=dict(options.compressions),
        )
        self._send = send
        self._stalled = stalled
        self._task_group = task_group
        self._write_limit = options.limits.write_buffer_size
        self.outbox: collections.deque[bytes] = collections.deque()
        self._outbox_bytes = 0
        self.drained: anyio.Event | None = None
        self._backlog: collections.deque[ev.Event] | None = None
        self._clock = clock_factory()
        self.last_seen = self._clock()
        self.gone = False
        self._barrier: tuple[bytes, anyio.Event] | None = None
        self._shrunk: anyio.Event | None = None
        self._deferred: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ reading

    def receive(self, message: bytes) -> None:
        """One message from this peer. Raises RemoteProtocolError: the peer must go."""
        self.last_seen = self._clock()
        one_frame(message)
        for event in self.proto.receive_data(message):
            if self._backlog is not None:
                self._backlog.append(event)
            elif self._must_wait(event):
                self._backlog = collections.deque([event])
                self._task_group.start_soon(self._catch_up)
            else:
                self._on_event(event)

    def _must_wait(self, event: ev.Event) -> bool:
        kind = type(event)
        return kind is ev.HeavyRequestReceived or (
            kind is ev.RequestReceived
            and event.mode is _NO_RESPONSE  # type: ignore[union-attr]
            and self.session.full
        )

    async def _catch_up(self) -> None:
        """The backlog, in order: heavy requests decoded in a worker thread, noResponse calls
        once the session has room."""
        backlog = self._backlog
        assert backlog is not None
        while backlog and not self.gone:
            event = backlog.popleft()
            if self._shrunk is not None and len(backlog) < MAX_BACKLOG:
                self._shrunk.set()
                self._shrunk = None
            if type(event) is ev.HeavyRequestReceived:
                event = await self.session.runner.offload(
                    self.proto.decode_request,
                    event.stream_id,
                    event.mode,
                    event.flags,
                    event.payload,
                    False,
                )
            if type(event) is ev.RequestReceived and event.mode is _NO_RESPONSE:
                await self.session.room()
            self._on_event(event)
        self._backlog = None
        if self._shrunk is not None:
            self._shrunk.set()

    @property
    def backlog_full(self) -> bool:
        return self._backlog is not None and len(self._backlog) >= MAX_BACKLOG

    async def backlog_shrunk(self) -> None:
        while self.backlog_full and not self.gone:
            if self._shrunk is None:
                self._shrunk = anyio.Event()
            await self._shrunk.wait()

    def _on_event(self, event: ev.Event) -> None:
        if handle_server_event(event, self.session, self.proto, self):
            return
        barrier = self._barrier
        payload = getattr(event, "payload", None)
        if type(event) is ev.PongReceived and barrier is not None and payload == barrier[0]:
            barrier[1].set()

    async def delivered(self) -> None:
        """Return once the peer has read everything sent to it so far: libzmq sends in the
        background, so only the PONG to a PING sent after it tells."""
        payload = os.urandom(8)
        self._barrier = (payload, anyio.Event())
        self.write(self.proto.send_ping(payload))
        await self._barrier[1].wait()

    # ------------------------------------------------------------------ writing

    def write(self, frame: bytes, at_once: bool = True) -> None:
        """Send `frame` to this peer, or queue it while its pipe is full (a message per
        frame: `at_once` changes nothing, libzmq gathers small messages itself)."""
        if self.gone or (not self.outbox and self._send([self.identity, frame])):
            return
        self.outbox.append(frame)
        self._outbox_bytes += len(frame)
        self._stalled(self)

    def defer(self, produce: Callable[[], None]) -> None:
        """Call `produce` once other tasks had their turn: a stream's items gather meanwhile."""
        if self.gone:
            return
        self._deferred.append(produce)
        if len(self._deferred) == 1:
            self._task_group.start_soon(self._produce)

    async def _produce(self) -> None:
        deferred, self._deferred = self._deferred, []
        for produce in deferred:
            produce()

    @property
    def closed(self) -> bool:
        return self.gone

    @property
    def full(self) -> bool:
        """More than `write_buffer_size` waits for this peer: its answers should wait."""
        return self._outbox_bytes > self._write_limit and not self.gone

    async def drain(self) -> None:
        while self._outbox_bytes > self._write_limit and not self.gone:
            if self.drained is None:
                self.drained = anyio.Event()
            await self.drained.wait()

    def flush(self) -> bool:
        """Send what waits, as far as the pipe takes it; True once nothing waits."""
        outbox = self.outbox
        while outbox and not self.gone:
            if not self._send([self.identity, outbox[0]]):
                return False
            self._outbox_bytes -= len(outbox.popleft())
        if self.drained is not None and self._outbox_bytes <= self._write_limit:
            self.drained.set()
            self.drained = None
        return True

    @property
    def overflowing(self) -> bool:
        """More than twice `write_buffer_size` waits for a peer that does not read."""
        return self._outbox_bytes > 2 * self._write_limit

    def close(self) -> None:
        """The peer is gone: its waiting calls are cancelled, nothing more goes to it."""
        if self.gone:
            return
        self.gone = True
        self.outbox.clear()
        self._outbox_bytes = 0
        self._deferred.clear()
        if self.drained is not None:
            self.drained.set()
        self.session.close()
        if self._barrier is not None:
            self._barrier[1].set()
        if self._shrunk is not None:
            self._shrunk.set()
