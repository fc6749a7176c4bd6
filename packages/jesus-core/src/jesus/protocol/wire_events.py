"""What a protocol connection reports after reading bytes. Slotted and not frozen: a frozen
dataclass sets each field through object.__setattr__, 1.5 µs more per request. Read only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jesus.errors import CallError
from jesus.messages import ResponseMode


@dataclass(slots=True)
class HelloReceived:
    info: dict[str, Any]


@dataclass(slots=True)
class RequestReceived:
    stream_id: int
    mode: ResponseMode
    method: str
    meta: Any  # the raw compact meta map; jesus.messages.Meta.from_wire parses it
    data: Any
    size: int = 0  # the payload's decoded size, charged against the in-flight budgets


@dataclass(slots=True)
class HeavyRequestReceived:
    """A REQUEST frame too large to decode on the event loop: the transport decodes it in a
    worker thread with `ProtocolConnection.decode_request`."""

    stream_id: int
    mode: ResponseMode
    flags: int
    payload: bytes


@dataclass(slots=True)
class RequestRejected:
    """A REQUEST frame whose envelope could not be read; the server must answer `error`."""

    stream_id: int
    mode: ResponseMode
    error: CallError


@dataclass(slots=True)
class ResponseReceived:
    stream_id: int
    value: Any
    size: int = 0  # the payload's, as it came


@dataclass(slots=True)
class AckReceived:
    stream_id: int


@dataclass(slots=True)
class ErrorReceived:
    stream_id: int  # 0: the peer is closing the connection because of this error
    error: CallError


@dataclass(slots=True)
class ItemReceived:
    stream_id: int
    value: Any
    size: int = 0  # the frame's payload bytes, as the byte window counts them


@dataclass(slots=True)
class ItemsReceived:
    stream_id: int
    values: list[Any]  # in order, at least one
    size: int = 0  # the frame's payload bytes, as the byte window counts them


@dataclass(slots=True)
class EndReceived:
    stream_id: int


@dataclass(slots=True)
class CancelReceived:
    stream_id: int


@dataclass(slots=True)
class CreditReceived:
    stream_id: int
    credit: int  # items
    nbytes: int = 0  # bytes, from a client with a byte window


@dataclass(slots=True)
class PingReceived:
    payload: bytes


@dataclass(slots=True)
class PongReceived:
    payload: bytes


@dataclass(slots=True)
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
