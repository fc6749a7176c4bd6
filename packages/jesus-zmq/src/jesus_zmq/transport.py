"""The `zmq` transport: the framed protocol over a ROUTER socket (server) and DEALER sockets
(client), with the socket options both ends share."""

from __future__ import annotations

import math
from typing import Any

from anyio.abc import TaskGroup

import zmq
from jesus.messages import ResponseMode
from jesus.protocol.frames import HEADER_SIZE, MIN_FRAME_LIMIT
from jesus.transport import CallHandler, TransportOptions
from jesus_zmq.addresses import endpoint_of, parse_bind
from jesus_zmq.client import ZmqClient
from jesus_zmq.curve import serve_curve, zap
from jesus_zmq.server import ZmqServer

# libzmq counts the heartbeat TTL in tenths of a second, in 16 bits.
MAX_HEARTBEAT_TTL = 6_553_500


class ZmqTransport:
    """`zmq://host:port`: calls in all four modes, streams under credit; CURVE when given
    keys (`zmq://host:port?curve=KEY`)."""

    scheme = "zmq"
    modes = frozenset(ResponseMode)
    tls = False
    keyed = True  # CURVE with TransportOptions.keys
    local = False

    async def listen(
        self, handler: CallHandler, bind: str | None, options: TransportOptions
    ) -> ZmqServer:
        host, port = parse_bind(bind)
        sock = new_socket(zmq.ROUTER, options)
        # A message to a routing id whose connection is gone fails (EHOSTUNREACH) instead of
        # vanishing, and one to a full pipe fails with EAGAIN instead of being dropped.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        keys, domain = options.keys, None
        address = f"tcp://[{host}]" if ":" in host else f"tcp://{host}"
        try:
            if keys is not None:
                domain = serve_curve(sock, keys)
            if port:
                sock.bind(f"{address}:{port}")
            else:
                port = sock.bind_to_random_port(address)
        except BaseException:
            sock.close(linger=0)
            if domain is not None:
                zap.close(domain)
            raise
        endpoint = endpoint_of(host, port, None if keys is None else keys.public)
        return ZmqServer(sock, endpoint, handler, options, domain)

    def client(self, options: TransportOptions, task_group: TaskGroup) -> ZmqClient:
        return ZmqClient(options, task_group)


def new_socket(kind: int, options: TransportOptions) -> zmq.Socket[Any]:
    limits = options.limits
    sock: zmq.Socket[Any] = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    # libzmq drops the connection of a peer that sends a larger message, before buffering it:
    # the largest frame either end accepts (PROTOCOL.md, "Frames").
    largest = max(limits.max_message_size, MIN_FRAME_LIMIT) + HEADER_SIZE
    sock.setsockopt(zmq.MAXMSGSIZE, largest)
    interval = limits.keepalive_interval
    if math.isfinite(interval):
        # ZMTP heartbeats drop a dead TCP connection; the protocol's PINGs (above it) drop a
        # peer that no longer answers.
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(interval * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(interval * 3000))
        sock.setsockopt(zmq.HEARTBEAT_TTL, min(int(interval * 3000), MAX_HEARTBEAT_TTL))
    return sock
