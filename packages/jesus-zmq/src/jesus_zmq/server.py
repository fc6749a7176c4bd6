"""Server side: one ROUTER socket; each routing id is a peer with the state of a connection
(handshake, calls, credit), and each ZMQ message from it carries one frame."""

from __future__ import annotations

import errno
import logging
import math
from typing import Any

import anyio

import zmq
from jesus.errors import (
    BadFrame,
    CallError,
    FrameTooLarge,
    PermissionDenied,
    RemoteProtocolError,
    TooLarge,
    Unavailable,
)
from jesus.protocol.connection import ProtocolConnection, Role
from jesus.security.caller import ANONYMOUS, Caller
from jesus.throttled_log import ThrottledLog
from jesus.transport import CallHandler, CallRunner, TransportOptions
from jesus.transport.keys import KeyRefused
from jesus_zmq.curve import client_of, property_of, zap
from jesus_zmq.monitor import GONE, watch
from jesus_zmq.peer import Peer
from jesus_zmq.pump import SocketPump

log = logging.getLogger("jesus.zmq.server")
# What a peer can cause at will, logged without a flood.
peer_log = ThrottledLog(log)

# While a peer's answers wait for its pipe, they are offered to it again this often.
RETRY_INTERVAL = 0.005
# After a connection closed, when to look for the peer that lost it (seconds after).
PROBE_DELAYS = (0.0, 0.05, 0.25, 1.0)
# How long the last answers may take to leave once the socket is closed (in the background).
CLOSE_LINGER_MS = 1000
# Routing ids refused for their certificate whose further messages are dropped unread.
MAX_REFUSED = 4096


class ZmqServer:
    """Serves the jesus protocol on a bound ROUTER socket; a CURVE server when it has a ZAP
    `domain` (its peers are then known by their certificates)."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        endpoint: str,
        handler: CallHandler,
        options: TransportOptions,
        domain: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._sock = sock
        self._options = options
        self.runner = CallRunner(handler, options.limits)
        self._domain = domain
        self._refused: set[bytes] = set()
        if domain is None:
            self._pump = SocketPump(sock, self._on_message)
        else:  # frames: the first of a peer carries its certificate
            self._pump = SocketPump(sock, self._on_frames)
            self._pump.copy = False
        self._peers: dict[bytes, Peer] = {}
        self._waiting: set[Peer] = set()  # peers whose answers wait for their pipe
        self._flusher = anyio.Event()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._closing = False
        self._stopped = anyio.Event()
        self._serving = False
        self.dropped_messages = 0  # malformed multipart messages, counted

    @property
    def peers(self) -> int:
        """Peers known by their routing id: connections past their first message."""
        return len(self._peers)

    async def serve(self) -> None:
        self._serving = True
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                self.runner.bind(tg)
                tg.start_soon(self._pump.run)
                tg.start_soon(self._flush_loop)
                tg.start_soon(watch, self._sock, GONE, self._disconnected)
                idle = self._options.limits.keepalive_interval * 3
                if math.isfinite(idle):
                    tg.start_soon(self._watchdog, idle)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.runner.aclose()
                # What the drain answered may still sit in libzmq's pipes: let it go out.
                self._close_socket()

    # ------------------------------------------------------------------ reading

    def _on_message(self, parts: list[bytes]) -> Any:
        if len(parts) != 2:  # [routing id, frame]: anything else is not ours to read
            self.dropped_messages += 1
            peer_log.warning("dropping a %d-part message (one frame per message)", len(parts))
            return None
        identity, message = parts
        peer = self._peers.get(identity)
        if peer is None:
            peer = self._accept(identity)
            if peer is None:
                return None
        return self._receive(peer, message)

    def _on_frames(self, frames: list[zmq.Frame]) -> Any:
        """A message to a CURVE server: a new peer's first is checked for its certificate."""
        if len(frames) != 2:
            return self._on_message([frame.bytes for frame in frames])
        identity = frames[0].bytes
        peer = self._peers.get(identity)
        if peer is None:
            if identity in self._refused:
                self.dropped_messages += 1
                return None
            assert self._options.keys is not None
            try:
                caller = client_of(frames[1], self._options.keys)
            except KeyRefused as exc:
                self._refuse(identity, frames[1], exc)
                return None
            peer = self._accept(identity, caller)
            if peer is None:
                return None
        return self._receive(peer, frames[1].bytes)

    def _refuse(self, identity: bytes, frame: zmq.Frame, why: KeyRefused) -> None:
        address = (property_of(frame, "Peer-Address") or b"a peer").decode(errors="replace")
        peer_log.warning("refused the CURVE peer at %s: %s", address, why)
        if len(self._refused) >= MAX_REFUSED:
            self._refused.clear()
        self._refused.add(identity)
        self._error(identity, PermissionDenied(f"the server does not trust this client: {why}"))

    def _error(self, identity: bytes, error: CallError) -> None:
        """ERROR on stream 0 to a routing id that is no peer (refused, or not let in)."""
        proto = ProtocolConnection(Role.SERVER, self._options.limits)
        self._send([identity, proto.send_error(0, error)])

    def _receive(self, peer: Peer, message: bytes) -> Any:
        try:
            peer.receive(message)
        except RemoteProtocolError as exc:
            peer_log.warning("protocol error from peer, dropping it: %s", exc)
            error = TooLarge(str(exc)) if isinstance(exc, FrameTooLarge) else BadFrame(str(exc))
            peer.write(peer.proto.send_error(0, error))
            self._drop(peer)
            return None
        except Exception:  # one peer's failure must never take the server down
            log.exception("failed to handle a message; dropping its peer")
            self._drop(peer)
            return None
        # A long backlog stops the reading of the socket until it shrinks: the only
        # back-pressure a ROUTER socket has (its pipes fill up, and the senders wait).
        return peer.backlog_shrunk() if peer.backlog_full else None

    def _accept(self, identity: bytes, caller: Caller = ANONYMOUS) -> Peer | None:
        limits = self._options.limits
        tg = self._task_group
        assert tg is not None
        if self._closing or len(self._peers) >= limits.max_connections:
            why = "server shutting down" if self._closing else "server is at max_connections"
            self._error(identity, Unavailable(f"{why} ({limits.max_connections})"))
            return None
        session = self.runner.session(caller)
        peer = Peer(identity, session, self._options, self._send, self._stalled, tg)
        self._peers[identity] = peer
        return peer

    def _disconnected(self, event: int) -> None:
        """libzmq closed a connection. Find whose by PINGing every peer: a ROUTER socket
        (ROUTER_MANDATORY) refuses a message to a routing id whose pipe is gone. The pipe
        goes a moment after the event, so the PINGs go a few times."""
        assert self._task_group is not None
        self._task_group.start_soon(self._probe)

    async def _probe(self) -> None:
        for delay in PROBE_DELAYS:
            await anyio.sleep(delay)
            for peer in list(self._peers.values()):
                if not peer.outbox and peer.proto.peer_info:
                    self._send([peer.identity, peer.proto.send_ping()])

    async def _watchdog(self, idle: float) -> None:
        """Drop peers silent this long (a client pings after keepalive_interval)."""
        while True:
            await anyio.sleep(idle / 4)
            now = anyio.current_time()
            for peer in list(self._peers.values()):
                if now - peer.last_seen >= idle:
                    log.info("dropping a silent peer")
                    self._drop(peer)

    def _drop(self, peer: Peer) -> None:
        peer.close()
        self._peers.pop(peer.identity, None)
        self._waiting.discard(peer)

    # ------------------------------------------------------------------ writing

    def _send(self, parts: list[bytes]) -> bool:
        try:
            return self._pump.send(parts)
        except zmq.ZMQError as exc:
            if exc.errno == errno.ENOTSOCK:  # serve() was cancelled and closed the socket
                return True
            if exc.errno != errno.EHOSTUNREACH:
                raise
            peer = self._peers.get(parts[0])  # ROUTER_MANDATORY: that peer is gone
            if peer is not None:
                log.info("peer disconnected")
                self._drop(peer)
            return True

    def _stalled(self, peer: Peer) -> None:
        """`peer`'s pipe is full: its answers wait in its outbox."""
        if peer.overflowing:
            peer_log.warning("dropping a peer that does not read its answers")
            self._drop(peer)
            return
        self._waiting.add(peer)
        self._flusher.set()

    async def _flush_loop(self) -> None:
        """Offer the answers that wait for full pipes again, until they went out."""
        while True:
            await self._flusher.wait()
            self._flusher = anyio.Event()
            while self._waiting:
                for peer in list(self._waiting):
                    if peer.flush() or peer.gone:
                        self._waiting.discard(peer)
                await self._pump.writable()
                await anyio.sleep(RETRY_INTERVAL)

    # ------------------------------------------------------------------ closing

    async def aclose(self) -> None:
        """Tell clients to go away, let in-flight calls finish, flush, close."""
        if self._closing:
            return
        self._closing = True
        if self._sock.closed:  # serve() ended first
            self._stopped.set()
            return
        for peer in list(self._peers.values()):
            peer.write(peer.proto.send_goaway("server shutting down"))
        await self.runner.drain()
        with anyio.move_on_after(1):  # the last answers, read by their peers
            async with anyio.create_task_group() as tg:
                for peer in list(self._peers.values()):
                    if peer.proto.peer_info:  # past its handshake: it answers PINGs
                        tg.start_soon(peer.delivered)
        for peer in list(self._peers.values()):
            self._drop(peer)
        self._stopped.set()
        if not self._serving:
            self._close_socket()

    def _close_socket(self) -> None:
        self._sock.close(linger=CLOSE_LINGER_MS)
        if self._domain is not None:
            zap.close(self._domain)
