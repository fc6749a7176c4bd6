"""Receiving side: every datagram is parsed, de-duplicated, checked and dispatched; garbage is
counted and logged, never fatal."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

import anyio

from jesus.errors import BadFrame, CallError, InvalidRequest, InvalidResponse, TooLarge, Unavailable
from jesus.messages import ResponseMode
from jesus.protocol.datagram import Datagram, DatagramCodec, decode_datagram, error_datagram
from jesus.protocol.dedup import DedupWindow
from jesus.protocol.frames import FrameType
from jesus.runtime.dispatcher import CallDispatcher, PreparedCall
from jesus.runtime.spawner import CallSpawner
from jesus.transport import TransportOptions
from jesus_udp.sender import DatagramSender

log = logging.getLogger("jesus.udp.server")

_STREAM_REFUSED = (
    "stream calls need a stream channel (tcp, unix); udp carries noResponse, ack and response"
)


class UdpListener:
    def __init__(
        self, socket: Any, endpoint: str, dispatcher: CallDispatcher, options: TransportOptions
    ) -> None:
        self.endpoint = endpoint
        self._socket = socket
        self._dispatcher = dispatcher
        self._options = options
        self._limits = options.limits
        self._sender = DatagramSender(socket)
        self._dedup = DedupWindow(self._limits.dedup_window, self._limits.dedup_capacity)
        self._codecs: dict[tuple[str, str], DatagramCodec] = {}
        self._spawner: CallSpawner | None = None
        self._stopped = anyio.Event()
        self._closing = False
        self._last_warning = 0.0
        # What was refused and why; also logged (at most once a second).
        self.stats: collections.Counter[str] = collections.Counter()

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._spawner = CallSpawner(tg, self._deadline_passed)
                tg.start_soon(self._sender.run)
                tg.start_soon(self._receive_loop)
                await self._stopped.wait()
                await self._spawner.aclose()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._socket.aclose()

    async def aclose(self) -> None:
        """Stop taking requests, let running calls finish and their answers go out."""
        self._closing = True
        if self._spawner is not None:
            await self._spawner.wait_idle()
        await anyio.sleep(0.01)  # a turn for the sender to send the last answers
        self._stopped.set()

    async def _receive_loop(self) -> None:
        try:
            async for data, address in self._socket:
                try:
                    self._on_datagram(data, address)
                except Exception:  # one datagram must never stop the listener
                    log.exception("datagram from %s:%s could not be handled", *address[:2])
                    self.stats["internal_error"] += 1
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # closed by aclose()

    def _refused(self, reason: str, address: Any, detail: object) -> None:
        self.stats[reason] += 1
        now = time.monotonic()
        if now - self._last_warning >= 1.0:
            self._last_warning = now
            log.warning(
                "refused a datagram from %s:%s (%s): %s [totals: %s]",
                address[0],
                address[1],
                reason,
                detail,
                dict(self.stats),
            )

    def _codec(self, dg: Datagram) -> DatagramCodec | None:
        key = (dg.codec, dg.compression)
        codec = self._codecs.get(key)
        if codec is None:
            c = self._options.codecs.get(dg.codec)
            z = self._options.compressions.get(dg.compression)
            if c is None or z is None:
                return None
            codec = self._codecs[key] = DatagramCodec(c, z, self._limits)
        return codec

    def _answer(self, key: Any, address: Any, datagram: bytes) -> None:
        self._dedup.answered(key, datagram)
        self._sender.send(datagram, address[:2])

    def _on_datagram(self, data: bytes, address: Any) -> None:
        if len(data) > self._limits.max_datagram_size:
            self._refused("too_large", address, f"{len(data)} bytes")
            return
        try:
            dg = decode_datagram(data)
        except BadFrame as exc:
            self._refused("garbage", address, exc)
            return
        if dg.type != FrameType.REQUEST:
            self._refused("unexpected_type", address, f"type 0x{dg.type:02x}")
            return
        wants_answer = dg.mode is not ResponseMode.NO_RESPONSE
        codec = self._codec(dg)
        if codec is None:
            self._refused("unknown_codec", address, f"{dg.codec}+{dg.compression}")
            if wants_answer:
                names = _Named(dg.codec), _Named(dg.compression)
                error = BadFrame(
                    f"codec {dg.codec!r} or compression {dg.compression!r} not installed"
                )
                self._sender.send(error_datagram(dg.message_id, *names, error), address[:2])
            return
        key = (address[0], address[1], dg.message_id)
        try:
            envelope = codec.unpack(dg)
            if (
                not isinstance(envelope, list)
                or len(envelope) != 3
                or not isinstance(envelope[0], str)
            ):
                raise BadFrame("the envelope must be [method, meta, data]")
            if dg.mode is ResponseMode.STREAM:
                raise InvalidRequest(_STREAM_REFUSED)
            call = self._dispatcher.prepare(envelope[0], envelope[1], envelope[2], dg.mode)
        except CallError as exc:
            self._refused("rejected", address, exc)
            _, cached = self._dedup.check(key, anyio.current_time())
            if wants_answer:
                answer = cached or error_datagram(
                    dg.message_id, codec.codec, codec.compression, exc
                )
                self._answer(key, address, answer)
            return
        duplicate, cached = self._dedup.check(key, anyio.current_time(), call.deadline)
        if duplicate:
            self.stats["duplicate"] += 1
            if cached is not None:
                self._sender.send(cached, address[:2])  # the first answer may have been lost
            return
        assert self._spawner is not None
        if self._closing or len(self._spawner) >= self._limits.max_inflight_calls:
            reason = "shutting down" if self._closing else "too many calls in flight"
            self._refused("unavailable", address, reason)
            if wants_answer:
                busy = Unavailable(f"server is {reason}", corrid=call.meta.corrid)
                self._answer(
                    key,
                    address,
                    error_datagram(dg.message_id, codec.codec, codec.compression, busy),
                )
            return
        if dg.mode is ResponseMode.ACK:
            ack = codec.pack(FrameType.ACK, dg.message_id, None, dg.mode)
            self._answer(key, address, ack)
        self._spawner.spawn(
            key,
            self._run,
            key,
            address,
            dg,
            codec,
            call,
            deadline=call.deadline,
            context=(key, address, dg, codec, call),
        )

    async def _run(
        self, key: Any, address: Any, dg: Datagram, codec: DatagramCodec, call: PreparedCall
    ) -> None:
        try:
            result = await self._dispatcher.run(call)
        except CallError as exc:
            if dg.mode is ResponseMode.RESPONSE:
                self._answer(
                    key, address, error_datagram(dg.message_id, codec.codec, codec.compression, exc)
                )
            else:
                log.warning("%s call failed after it was accepted: %s", dg.mode.value, exc)
            return
        if dg.mode is not ResponseMode.RESPONSE:
            return
        try:
            answer = codec.pack(FrameType.RESPONSE, dg.message_id, result, dg.mode)
        except (TooLarge, ValueError) as exc:
            error = exc if isinstance(exc, TooLarge) else InvalidResponse(str(exc))
            error.corrid = call.meta.corrid
            answer = error_datagram(dg.message_id, codec.codec, codec.compression, error)
        self._answer(key, address, answer)

    def _deadline_passed(self, key: Any, context: Any) -> None:
        _, address, dg, codec, call = context
        if dg.mode is ResponseMode.RESPONSE:
            error = self._dispatcher.deadline_exceeded(call)
            self._answer(
                key, address, error_datagram(dg.message_id, codec.codec, codec.compression, error)
            )


class _Named:
    """Stands for a codec or compression we do not have, to echo its name in an error."""

    def __init__(self, name: str) -> None:
        self.name = name
