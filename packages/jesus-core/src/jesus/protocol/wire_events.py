"""What a protocol connection reports after reading bytes. Frozen, slotted, cheap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jesus.errors import CallError
from jesus.messages import ResponseMode


@dataclass(frozen=True, slots=True)
class HelloReceived:
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestReceived:
    stream_id: int
    mode: ResponseMode
    method: str
    meta: Any  # the raw compact meta map; jesus.messages.Meta.from_wire parses it
    data: Any
    size: int = 0  # the payload's decoded size, charged against the in-flight budgets


@dataclass(frozen=True, slots=True)
class HeavyRequestReceived:
    """A REQUEST frame too large to decode on the event loop: the transport decodes it in a
    worker thread with `ProtocolConnection.decode_request`."""

    stream_id: int
    mode: ResponseMode
    flags: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """A REQUEST frame whose envelope could not be read; the server must answer `error`."""

    stream_id: int
    mode: ResponseMode
    error: CallError


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    stream_id: int
    value: Any
    size: int = 0  # the payload's, as it came


@dataclass(frozen=True, slots=True)
class AckReceived:
    stream_id: int


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    stream_id: int  # 0: the peer is closing the connection because of this error
    error: CallError


@dataclass(frozen=True, slots=True)
class ItemReceived:
    stream_id: int
    value: Any
    size: int = 0  # the frame's payload bytes, as the byte window counts them


@dataclass(frozen=True, slots=True)
class ItemsReceived:
    stream_id: int
    values: list[Any]  # in order, at least one
    size: int = 0  # the frame's payload bytes, as the byte window counts them


@dataclass(frozen=True, slots=True)
class EndReceived:
    stream_id: int


@dataclass(frozen=True, slots=True)
class CancelReceived:
    stream_id: int


@dataclass(frozen=True, slots=True)
class CreditReceived:
    stream_id: int
    credit: int  # items
    nbytes: int = 0  # bytes, from a client with a byte window


@dataclass(frozen=True, slots=True)
class PingReceived:
    payload: bytes


@dataclass(frozen=True, slots=True)
class PongReceived:
    payload: bytes


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    last_stream_id: int
    reason: str


Event = (
    HelloReceived
    | RequestReceived
    | HeavyRequestReceived
    | RequestRejected
    | ResponseReceived
    | AckReceived
    | ErrorReceived
    | ItemReceived
    | ItemsReceived
    | EndReceived
    | CancelReceived
    | CreditReceived
    | PingReceived
    | PongReceived
    | GoAwayReceived
)
