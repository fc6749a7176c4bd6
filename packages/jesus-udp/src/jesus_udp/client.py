"""Sending side: noResponse goes out once; ack and response are retransmitted with backoff
until the answer comes or the deadline passes (the receiver de-duplicates, so a handler runs
at most once per message)."""

from __future__ import annotations

import ipaddress
import logging
import math
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from anyio.abc import TaskGroup

from jesus.errors import (
    BadFrame,
    CallError,
    DeadlineExceeded,
    InvalidRequest,
    TooLarge,
)
from jesus.messages import Meta, ResponseMode
from jesus.protocol.datagram import DatagramCodec, decode_datagram, read_error
from jesus.protocol.frames import FrameType
from jesus.transport import OutgoingCall, TransportOptions, connect_errors
from jesus.transport.futures import EventFuture
from jesus.transport.pacing import Pacer
from jesus.transport.traffic import Meter
from jesus_udp.sender import DatagramSender

log = logging.getLogger("jesus.udp.client")

_IDS = struct.Struct("!512Q")


def _endpoint(endpoint: str) -> tuple[str, int]:
    from jesus_udp.transport import parse_endpoint

    return parse_endpoint(endpoint)


class _Socket:
    """One local socket per address family, with its reader and sender."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket
        self.sender = DatagramSender(socket)
        self.pacer = Pacer()


class UdpClient:
    def __init__(self, options: TransportOptions, task_group: TaskGroup) -> None:
        self._options = options
        self._limits = options.limits
        self._tg = task_group
        self._sockets: dict[str, _Socket] = {}
        self._lock = anyio.Lock()
        # message id -> (future of the answer, the address the request went to)
        self._waiting: dict[int, tuple[Any, tuple[str, int], Meter]] = {}
        self._codecs: dict[tuple[str, str], DatagramCodec] = {}
        self._addresses: dict[str, tuple[str, int]] = {}  # endpoint -> (ip, port), resolved once
        # Answers dropped because they came from another address than the request went to.
        self.wrong_source = 0
        self._ids: Iterator[int] = iter(())

    def _message_id(self) -> int:
        """Random, so that nobody who saw one id can answer for the next; drawn from the
        system's generator 512 at a time (one system call per id cost more than the rest of
        a notify's encoding)."""
        try:
            return next(self._ids)
        except StopIteration:
            self._ids = iter(_IDS.unpack(os.urandom(_IDS.size)))
            return next(self._ids)

    async def _socket_for(self, host: str, endpoint: str) -> _Socket:
        family = "ipv6" if ":" in host else "ipv4"
        sock = self._sockets.get(family)
        if sock is not None:
            return sock
        async with self._lock:
            sock = self._sockets.get(family)
            if sock is None:
                local = _local_host(host)
                with connect_errors(endpoint):
                    raw = await anyio.create_udp_socket(local_host=local, local_port=0)
                sock = self._sockets[family] = _Socket(raw)
                self._tg.start_soon(sock.sender.run)
                self._tg.start_soon(self._read, raw)
        return sock

    def _codec(self, codec: Any, compression: Any) -> DatagramCodec:
        key = (codec.name, compression.name)
        pair = self._codecs.get(key)
        if pair is None:
            pair = self._codecs[key] = DatagramCodec(codec, compression, self._limits)
        return pair

    async def _read(self, socket: Any) -> None:
        try:
            await self._read_loop(socket)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # closed by aclose()

    async def _read_loop(self, socket: Any) -> None:
        async for data, source in socket:
            try:
                dg = decode_datagram(data)
            except BadFrame as exc:
                log.debug("ignored a datagram: %s", exc)
                continue
            waiting = self._waiting.get(dg.message_id)
            if waiting is None or waiting[0].done():
                continue  # a late or duplicate answer
            future, address, meter = waiting
            if (source[0], source[1]) != address:
                self.wrong_source += 1  # anyone can send a datagram: only the callee answers
                log.debug("ignored an answer from %s:%s", source[0], source[1])
                continue
            meter.received += len(data)
            if dg.type == FrameType.ERROR:
                future.set_exception(read_error(dg.payload))
            elif dg.type == FrameType.ACK:
                future.set_result(None)
            elif dg.type == FrameType.RESPONSE:
                codec = self._codecs.get((dg.codec, dg.compression))
                if codec is None:
                    continue
                try:
                    future.set_result(codec.unpack(dg, inline=False)[0])
                except CallError as exc:
                    future.set_exception(exc)

    async def request(self, call: OutgoingCall) -> Any:
        meta, mode, method = call.meta, call.mode, call.target
        address = self._addresses.get(call.endpoint)
        if address is None:
            address = self._addresses[call.endpoint] = await _resolve(call.endpoint)
        sock = await self._socket_for(address[0], call.endpoint)
        pair = self._codec(call.codec, call.compression)
        message_id = self._message_id()
        try:
            datagram = pair.pack(
                FrameType.REQUEST, message_id, [method, meta.to_wire(), call.data], mode
            )
        except TooLarge as exc:
            exc.corrid = meta.corrid
            raise
        except ValueError as exc:
            raise InvalidRequest(str(exc), corrid=meta.corrid) from None
        meter = call.meter()
        meter.sent += len(datagram)  # once: a retransmission is the same message
        if mode is ResponseMode.NO_RESPONSE:
            sock.sender.send(datagram, address)
            if sock.sender.queued:
                await sock.pacer.yield_now()
            else:
                await sock.pacer.step()
            return None
        future = EventFuture()  # waited on once per retransmission, so it must survive cancels
        self._waiting[message_id] = (future, address, meter)
        deadline = math.inf if call.deadline is None else call.deadline
        delay = self._limits.retry_initial
        try:
            while True:
                sock.sender.send(datagram, address)
                wait = min(delay, deadline - anyio.current_time())
                if wait <= 0:
                    raise DeadlineExceeded(
                        f"{method}: no answer over udp before the deadline", corrid=meta.corrid
                    )
                with anyio.move_on_after(wait):
                    return await _result(future, meta)
                delay = min(delay * 2, self._limits.retry_max)
        finally:
            self._waiting.pop(message_id, None)

    def stream(self, call: OutgoingCall) -> AsyncIterator[Any]:
        raise InvalidRequest(
            f"{call.target}: stream calls need a stream channel (tcp, unix, http), not udp",
            corrid=call.meta.corrid,
        )

    async def aclose(self) -> None:
        sockets, self._sockets = self._sockets, {}
        for sock in sockets.values():
            await sock.socket.aclose()


async def _result(future: Any, meta: Meta) -> Any:
    try:
        return await future
    except CallError as exc:
        if exc.corrid is None:
            exc.corrid = meta.corrid
        raise


async def _resolve(endpoint: str) -> tuple[str, int]:
    """The (ip, port) of an endpoint, as answers will come from it."""
    host, port = _endpoint(endpoint)
    try:
        return ipaddress.ip_address(host).compressed, port
    except ValueError:
        pass
    with connect_errors(endpoint):
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return str(infos[0][4][0]), port


def _local_host(target: str) -> str:
    """Bind next to the target: the loopback address for a loopback target."""
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        return "0.0.0.0"
    if address.is_loopback:
        return "::1" if address.version == 6 else "127.0.0.1"
    return "::" if address.version == 6 else "0.0.0.0"
