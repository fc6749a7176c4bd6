"""The jesus stream protocol, sans-IO: bytes in, events out; calls in, bytes out.

Transports (TCP, unix sockets, TLS) only move bytes; everything PROTOCOL.md says about
frames, the handshake and the call state machine lives here.
"""

from jesus.protocol.frames import (
    HEADER,
    PROTOCOL_VERSION,
    Flag,
    FrameDecoder,
    FrameType,
    encode_frame,
)

__all__ = ["HEADER", "PROTOCOL_VERSION", "Flag", "FrameDecoder", "FrameType", "encode_frame"]
