"""The transport toolkit: the contract between the core and a transport plugin, and the
pieces every transport shares, so that each rule is written once.

    contract   Transport, Server, TransportClient, CallHandler, Reply, TransportOptions
    outgoing   OutgoingCall: one call as the client planned it, handed to a transport
    runner     CallRunner and Session: the server-side life of every call
    spawner    one task per call, bounded by its deadline, at the lowest cost per backend
    writer     the writer with back-pressure, for byte-stream transports; FrameSink
    reply      FrameReply: one call's answers as frames, with stream credit and ITEMS batching
    server_events  what a server does with a connection's frames (requests, CANCEL, CREDIT)
    answers    the client side: answers matched to calls, deadlines, stream credit given back
    pool       ConnectionPool: a TransportClient over connections per (endpoint, channel)
    futures    the cheapest one-shot result and clock per backend
    boundary   the library exceptions a transport translates, in one place
    reading    stop_reading_ahead: where a server stops reading from a peer
    peer       peer_of: who an accepted stream's peer is proven to be (TLS, unix credentials)
    tls        TLS listening that logs one line per refused peer, and why a handshake failed
    keys       TransportKeys: a key pair vouched for by the sealing certificate (zmq's CURVE)
    traffic    Meter: the bytes each end sent and received per channel and method

A transport moves bytes and maps what arrives onto a `Session` (server side) or answers an
`OutgoingCall` (client side); it imports only this package, never `jesus.runtime`.
"""

from jesus.transport.boundary import (
    BROKEN,
    CONNECT_ERRORS,
    connect_errors,
    unreachable,
    why_broken,
)
from jesus.transport.contract import (
    CallHandler,
    PreparedCall,
    Reply,
    Server,
    Transport,
    TransportClient,
    TransportOptions,
)
from jesus.transport.outgoing import OutgoingCall
from jesus.transport.peer import peer_of
from jesus.transport.reading import stop_reading_ahead
from jesus.transport.runner import CallRunner, Session
from jesus.transport.tls import explain_tls, tls_listener

__all__ = [
    "BROKEN",
    "CONNECT_ERRORS",
    "CallHandler",
    "CallRunner",
    "OutgoingCall",
    "PreparedCall",
    "Reply",
    "Server",
    "Session",
    "Transport",
    "TransportClient",
    "TransportOptions",
    "connect_errors",
    "explain_tls",
    "peer_of",
    "stop_reading_ahead",
    "tls_listener",
    "unreachable",
    "why_broken",
]
