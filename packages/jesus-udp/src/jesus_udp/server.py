"""Receiving side: every datagram is parsed, de-duplicated and handed to the call runner;
garbage is counted and logged, never fatal."""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, ClassVar

import anyio
from anyio.abc import TaskGroup

from jesus.errors import BadFrame, CallError
from jesus.messages import ResponseMode
from jesus.payload import Heavy
from jesus.protocol.datagram import Datagram, DatagramCodec, decode_datagram, error_datagram
from jesus.protocol.dedup import DedupWindow
from jesus.protocol.frames import FrameType
from jesus.transport import CallHandler, CallRunner, TransportOptions
from jesus.transport.feed import datagram_feed
from jesus.transport.futures import clock_factory
from jesus.transport.traffic import UNCOUNTED
from jesus_udp.sender import DatagramSender

log = logging.getLogger("jesus.udp.server")

# Large datagrams decoded in worker threads at once, each in a task holding its bytes.
MAX_HEAVY_DECODES = 8

MODES = frozenset({ResponseMode.NO_RESPONSE, ResponseMode.ACK, ResponseMode.RESPONSE})


class UdpServer:
    def __init__(
        self, socket: Any, endpoint: str, handler: CallHandler, options: TransportOptions
    ) -> None:
        self.endpoint = endpoint
        self._socket = socket
        self._options = options
        self._limits = options.limits
        self.runner = CallRunner(handler, options.limits, MODES)
        # Every sender shares one session: max_inflight_calls bounds the whole socket.
        self._session = self.runner.session()
        self._sender = DatagramSender(socket)
        self._dedup = DedupWindow(self._limits.dedup_window, self._limits.dedup_capacity)
        self._codecs: dict[tuple[str, str], DatagramCodec] = {}
        self._stopped = anyio.Event()
        self._tg: TaskGroup | None = None
        self._heavy = 0  # large datagrams being decoded in worker threads
        self._clock = clock_factory()  # bound once: a loop look-up is a getpid on Python 3.11
        self._last_warning = 0.0
        # What was refused and why; also logged (at most once a second).
        self.stats: collections.Counter[str] = collections.Counter()

    async def serve(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.runner.bind(tg)
                tg.start_soon(self._sender.run)
                self._tg = tg
                if not datagram_feed(self._socket, self._on_fed, _nothing):
                    tg.start_soon(self._receive_loop)
                await self._stopped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.runner.aclose()  # what the drain left running, when it timed out
                await self._socket.aclose()

    async def aclose(self) -> None:
        """Stop taking requests, let running calls finish and their answers go out."""
        if self.runner.closing:  # called again: the first drain timed out, stop now
            self._stopped.set()
            return
        await self.runner.drain()
        await anyio.sleep(0.01)  # a turn for the sender to send the last answers
        self._stopped.set()

    async def _receive_loop(self) -> None:
        try:
            async for data, address in self._socket:
                try:
                    heavy = self._on_datagram(data, address)
                    if heavy is not None:
                        # The socket is not read meanwhile: what overflows its buffer is lost,
                        # as datagrams may be, and sent again by senders that wait.
                        await self._decode_heavy(*heavy, address)
                except Exception:  # one datagram must never stop the server
                    self._failed(address)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # closed by aclose()

    def _on_fed(self, data: bytes, address: Any) -> None:
        """A datagram from the loop's read callback (asyncio): what must be decoded in a
        worker thread gets a task, at most MAX_HEAVY_DECODES at once; past that it is
        dropped, as a full socket buffer would drop it, and sent again by senders that wait."""
        try:
            heavy = self._on_datagram(data, address)
            if heavy is None:
                return
            tg = self._tg
            if tg is None or self._heavy >= MAX_HEAVY_DECODES:
                self.refused("busy", address, "too many large datagrams being decoded")
                return
            self._heavy += 1
            tg.start_soon(self._decode_heavy_fed, *heavy, address)
        except Exception:  # one datagram must never stop the server
            self._failed(address)

    async def _decode_heavy_fed(self, dg: Datagram, codec: DatagramCodec, address: Any) -> None:
        try:
            await self._decode_heavy(dg, codec, address)
        except Exception:
            self._failed(address)
        finally:
            self._heavy -= 1

    def _failed(self, address: Any) -> None:
        log.exception("datagram from %s:%s could not be handled", *address[:2])
        self.stats["internal_error"] += 1

    def refused(self, reason: str, address: Any, detail: object) -> None:
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

    def answer(self, key: Any, address: Any, datagram: bytes) -> None:
        self._dedup.answered(key, datagram)
        self._sender.send(datagram, address[:2])

    def _on_datagram(self, data: bytes, address: Any) -> tuple[Datagram, DatagramCodec] | None:
        """Take one datagram; returns it when it must be decoded off the event loop."""
        if len(data) > self._limits.max_datagram_size:
            self.refused("too_large", address, f"{len(data)} bytes")
            return None
        try:
            dg = decode_datagram(data)
        except BadFrame as exc:
            self.refused("garbage", address, exc)
            return None
        if dg.type != FrameType.REQUEST:
            self.refused("unexpected_type", address, f"type 0x{dg.type:02x}")
            return None
        codec = self._codec(dg)
        if codec is None:
            self.refused("unknown_codec", address, f"{dg.codec}+{dg.compression}")
            if dg.mode is not ResponseMode.NO_RESPONSE:
                names = _Named(dg.codec), _Named(dg.compression)
                error = BadFrame(
                    f"codec {dg.codec!r} or compression {dg.compression!r} not installed"
                )
                self._sender.send(error_datagram(dg.message_id, *names, error), address[:2])
            return None
        try:
            unpacked: tuple[Any, int] | CallError = codec.unpack(dg)
        except Heavy:
            return dg, codec
        except CallError as exc:
            unpacked = exc
        self._take(dg, codec, address, unpacked)
        return None

    async def _decode_heavy(self, dg: Datagram, codec: DatagramCodec, address: Any) -> None:
        try:
            unpacked: tuple[Any, int] | CallError = await self.runner.offload(
                codec.unpack, dg, False
            )
        except CallError as exc:
            unpacked = exc
        self._take(dg, codec, address, unpacked)

    def _take(
        self,
        dg: Datagram,
        codec: DatagramCodec,
        address: Any,
        unpacked: tuple[Any, int] | CallError,
    ) -> None:
        key = (address[0], address[1], dg.message_id)
        reply = DatagramReply(self, key, address, dg, codec)
        if not isinstance(unpacked, CallError):
            envelope, size = unpacked
            if (
                not isinstance(envelope, list)
                or len(envelope) != 3
                or not isinstance(envelope[0], str)
            ):
                unpacked = BadFrame("the envelope must be [method, meta, data]")
        if isinstance(unpacked, CallError):
            self.refused("rejected", address, unpacked)
            self._dedup.check(key, self._clock())
            self._session.refuse("(undecodable)", dg.mode, reply, unpacked)
            return
        at = self._clock()
        duplicate, cached = self._dedup.check(key, at, _deadline(envelope[1], at))
        if duplicate:
            self.stats["duplicate"] += 1
            if cached is not None:
                self._sender.send(cached, address[:2])  # the first answer may have been lost
            return
        self._session.admit(key, envelope[0], envelope[1], envelope[2], dg.mode, reply, size)


def _deadline(raw_meta: Any, at: float) -> float | None:
    """The message's deadline, to remember its id at least that long (a malformed meta is
    the runner's to refuse)."""
    ms = raw_meta.get("d") if isinstance(raw_meta, dict) else None
    if isinstance(ms, int) and not isinstance(ms, bool) and ms >= 0:
        return at + ms / 1000
    return None


class DatagramReply:
    """The answer of one message, as one datagram, remembered for its retransmissions."""

    __slots__ = ("address", "codec", "dg", "key", "meter", "open", "server")
    always_answers: ClassVar[bool] = False

    def __init__(
        self, server: UdpServer, key: Any, address: Any, dg: Datagram, codec: DatagramCodec
    ) -> None:
        self.server = server
        self.key = key
        self.address = address
        self.dg = dg
        self.codec = codec
        self.open = True
        self.meter = UNCOUNTED  # the runner's, once the call is admitted

    def ack(self) -> None:
        self.open = False
        dg = self.dg
        datagram = self.codec.pack(FrameType.ACK, dg.message_id, None, dg.mode)
        self.meter.sent += len(datagram)
        self.server.answer(self.key, self.address, datagram)

    def result(self, value: Any) -> None:
        dg = self.dg
        datagram = self.codec.pack(FrameType.RESPONSE, dg.message_id, value, dg.mode)
        self.open = False
        self.meter.sent += len(datagram)
        self.server.answer(self.key, self.address, datagram)

    def error(self, error: CallError) -> None:
        self.open = False
        codec = self.codec
        datagram = error_datagram(self.dg.message_id, codec.codec, codec.compression, error)
        self.meter.sent += len(datagram)
        self.server.answer(self.key, self.address, datagram)

    def item(self, value: Any) -> None:
        raise AssertionError("udp carries no streams")  # refused by the runner first

    def end(self) -> None:
        raise AssertionError("udp carries no streams")

    def close(self) -> None:
        self.open = False


class _Named:
    """Stands for a codec or compression we do not have, to echo its name in an error."""

    def __init__(self, name: str) -> None:
        self.name = name


def _nothing() -> None:
    """The socket closed: aclose() did it, and serve() is already on its way out."""
