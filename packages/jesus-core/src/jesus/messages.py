"""The objects every call is made of: `Msg`, `Meta` and `ResponseMode`."""

from __future__ import annotations

import enum
import itertools
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Meta", "Msg", "ResponseMode", "new_corrid"]


class ResponseMode(enum.StrEnum):
    """What the caller waits for once a message is sent."""

    NO_RESPONSE = "noResponse"
    ACK = "ack"
    RESPONSE = "response"
    STREAM = "stream"

    @property
    def wire(self) -> int:
        return _WIRE_BY_MODE[self]

    @classmethod
    def from_wire(cls, value: int) -> ResponseMode:
        return _MODE_BY_WIRE[value]


_WIRE_BY_MODE = {
    ResponseMode.NO_RESPONSE: 0,
    ResponseMode.ACK: 1,
    ResponseMode.RESPONSE: 2,
    ResponseMode.STREAM: 3,
}
_MODE_BY_WIRE = {v: k for k, v in _WIRE_BY_MODE.items()}

# A random process prefix plus a counter: unique like a uuid4, at a fraction of the cost.
_CORRID_PREFIX = os.urandom(6).hex()
_corrid_counter = itertools.count(1)


def new_corrid() -> str:
    return f"{_CORRID_PREFIX}-{next(_corrid_counter):x}"


# The longest deadline a peer may ask for (2**32 - 1 ms, about 49 days): past it a number is
# not a deadline but an attack on the arithmetic (a 400-digit one cannot become a float).
MAX_DEADLINE_MS = 2**32 - 1

# Short wire keys keep the envelope small; PROTOCOL.md lists them: c corrid, u userid,
# f from, o reqOutTimestamp, d deadline (ms), t traceparent, h channel, e event, x extra,
# s seal (the protection of a sealed request: "sign" or "encrypt"), r retries (the attempts
# the caller may make of this call, when more than one).


@dataclass(slots=True)
class Meta:
    """What travels with a message besides its data.

    `sender` is the seed's `from` (a Python keyword). Timestamps are UNIX seconds as floats;
    the deadline travels as milliseconds remaining, since peers' clocks differ.
    """

    corrid: str = field(default_factory=new_corrid)
    userid: str | None = None
    sender: str | None = None
    req_in_ts: float | None = None
    req_out_ts: float | None = None
    channel: str | None = None
    mode: ResponseMode = ResponseMode.RESPONSE
    deadline_ms: int | None = None
    traceparent: str | None = None
    # The event's name, when the message is an event delivered to a listener.
    event: str | None = None
    # Meta that plugins add (auth tokens, baggage); travels as the "x" map.
    extra: dict[str, Any] | None = None
    # How the data is sealed ("sign" or "encrypt"), None when it is not.
    seal: str | None = None
    # Attempts the caller may make of this call (set when more than one): the calls its
    # handler makes are then not retried themselves (jesus.routing.retries).
    retries: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """Compact map for the envelope; absent fields are left out."""
        out: dict[str, Any] = {"c": self.corrid}
        if self.userid is not None:
            out["u"] = self.userid
        if self.sender is not None:
            out["f"] = self.sender
        if self.req_out_ts is not None:
            out["o"] = self.req_out_ts
        if self.deadline_ms is not None:
            out["d"] = self.deadline_ms
        if self.traceparent is not None:
            out["t"] = self.traceparent
        if self.channel is not None:
            out["h"] = self.channel
        if self.event is not None:
            out["e"] = self.event
        if self.extra:
            out["x"] = self.extra
        if self.seal is not None:
            out["s"] = self.seal
        if self.retries is not None:
            out["r"] = self.retries
        return out

    @classmethod
    def from_wire(cls, raw: Any, mode: ResponseMode) -> Meta:
        """Parse the compact map; raises ValueError on a malformed one."""
        if not isinstance(raw, dict):
            raise ValueError("meta must be a map")
        corrid = raw.get("c")
        if not isinstance(corrid, str) or not corrid or len(corrid) > 128:
            raise ValueError("meta.c (corrid) must be a non-empty string of at most 128 chars")
        meta = cls(corrid, req_in_ts=time.time(), mode=mode)
        # One pass over the keys present (a handful), not a look-up of every key there may be.
        for key, value in raw.items():
            field_of = _WIRE_FIELDS.get(key)
            if field_of is None or value is None:
                continue  # "c", done above; unknown keys are ignored: newer peers may add some
            name, expected = field_of
            if not isinstance(value, expected) or type(value) is bool:
                raise ValueError(f"meta.{key} has the wrong type ({type(value).__name__})")
            setattr(meta, name, value)
        if meta.deadline_ms is not None and not 0 <= meta.deadline_ms <= MAX_DEADLINE_MS:
            raise ValueError(f"meta.d (deadline_ms) must be between 0 and {MAX_DEADLINE_MS}")
        return meta

    def as_dict(self) -> dict[str, Any]:
        """The seed's spelling, for people and logs."""
        return {
            "corrid": self.corrid,
            "userid": self.userid,
            "from": self.sender,
            "reqInTimestamp": self.req_in_ts,
            "reqOutTimestamp": self.req_out_ts,
            "channel": self.channel,
            "mode": str(self.mode),
            "deadlineMs": self.deadline_ms,
            "traceparent": self.traceparent,
            "event": self.event,
        }

    def copy(self, **changes: Any) -> Meta:
        return replace(self, **changes)


# Wire key -> (Meta field, the types its value may have); "c" is checked on its own.
_WIRE_FIELDS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "u": ("userid", str),
    "f": ("sender", str),
    "o": ("req_out_ts", (int, float)),
    "h": ("channel", str),
    "d": ("deadline_ms", int),
    "t": ("traceparent", str),
    "e": ("event", str),
    "x": ("extra", dict),
    "s": ("seal", str),
    "r": ("retries", int),
}


@dataclass(slots=True)
class Msg:
    """An RPC call or event: `{method, data, meta}`."""

    method: str
    data: Any
    meta: Meta = field(default_factory=Meta)
