"""The call state machine of one connection, for either end, without any I/O.

`receive_data(bytes)` returns events; the `send_*` methods return the bytes to write.
The rules it enforces (PROTOCOL.md, "State machine"):

- The first frame each way is HELLO; the server answers the client's HELLO before anything else.
  Each side's HELLO must carry its required keys; the optional numeric ones, when present, are
  positive integers.
- Only the client opens calls (REQUEST), with a stream id not already open on the connection.
- A call ends for the client at RESPONSE, ACK (ack mode), ERROR or END; noResponse calls
  never open. Frames for stream ids that are not open are ignored (they cross a CANCEL).
- An ERROR from the client on a call's stream abandons that call, exactly like a CANCEL.
- PING and PONG travel on stream 0 with 8 bytes of payload; anything else is a violation.
- ERROR, HELLO and GOAWAY payloads are UTF-8 JSON; REQUEST, RESPONSE, ITEM and ITEMS payloads
  use the connection's codec, compressed when the COMPRESSED flag is set.
- ITEMS (a non-empty array of stream items) goes only to a client whose HELLO announced the
  "items" capability; each item in it counts against the stream's credit.
- A client that announced `stream_window_bytes` also gives credit in bytes: to a server that
  announced "items", its CREDIT payloads are 8 bytes (items, then bytes).
"""

from __future__ import annotations

import enum
import json
import struct
from typing import Any

from jesus.errors import (
    BadFrame,
    CallError,
    LocalProtocolError,
    RemoteProtocolError,
    error_from_wire,
)
from jesus.limits import Limits, check_message_size
from jesus.messages import ResponseMode
from jesus.payload import Heavy, decode_payload
from jesus.protocol import wire_events as ev
from jesus.protocol.frames import (
    MAX_STREAM_ID,
    MODE_SHIFT,
    PROTOCOL_VERSION,
    Flag,
    FrameDecoder,
    FrameTooLarge,
    FrameType,
    encode_frame,
)

CAPABILITIES = ("stream", "cancel", "credit", "ping", "goaway", "items")
_U32 = struct.Struct("!I")
_CREDIT2 = struct.Struct("!II")
# Plain ints: IntFlag arithmetic costs a microsecond per frame on the hot path.
_COMPRESSED = int(Flag.COMPRESSED)
_MODE_MASK = int(Flag.MODE_MASK)
_DATA_FRAMES = frozenset((FrameType.REQUEST, FrameType.RESPONSE, FrameType.ITEM, FrameType.ITEMS))
_STREAM_ANSWERS = frozenset(
    (FrameType.RESPONSE, FrameType.ACK, FrameType.ITEM, FrameType.ITEMS, FrameType.END)
)
_MODES = [ResponseMode.from_wire(i) for i in range(4)]
_NO_RESPONSE = ResponseMode.NO_RESPONSE
_WIRE_MODE = {mode: mode.wire << MODE_SHIFT for mode in ResponseMode}
# Frame types and states as plain names: in Python 3.11 reading an enum member from its class
# costs 0.15 µs, and every frame read or written did it several times.
_HELLO = int(FrameType.HELLO)
_REQUEST = int(FrameType.REQUEST)
_RESPONSE = int(FrameType.RESPONSE)
_ACK = int(FrameType.ACK)
_ERROR = int(FrameType.ERROR)
_ITEM = int(FrameType.ITEM)
_ITEMS = int(FrameType.ITEMS)
_END = int(FrameType.END)
_CANCEL = int(FrameType.CANCEL)
_CREDIT = int(FrameType.CREDIT)
_PING_SIZE = 8
# A client HELLO without stream_window gets this initial credit.
DEFAULT_STREAM_WINDOW = 32
# What "no byte window" counts as (a client HELLO without stream_window_bytes).
UNLIMITED = 1 << 62


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    AWAIT_HELLO = "await-hello"
    OPEN = "open"
    CLOSED = "closed"


# HELLO keys by the side that sends them (PROTOCOL.md, "Handshake"); other keys are ignored.
_HELLO_REQUIRED = {
    Role.CLIENT: ("protocol", "version", "codec"),
    Role.SERVER: ("protocol", "version"),
}
_HELLO_COUNTS = {
    Role.CLIENT: ("max_message_size", "stream_window", "stream_window_bytes"),
    Role.SERVER: ("max_message_size", "max_inflight_calls"),
}


def _positive_int(value: Any) -> bool:
    # bool is an int in Python, never in JSON: `true` is not a count.
    return type(value) is int and value > 0


def _announces(hello: dict[str, Any], capability: str) -> bool:
    capabilities = hello.get("capabilities")
    return isinstance(capabilities, list) and capability in capabilities


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _unjson(payload: bytes, what: str) -> Any:
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RemoteProtocolError(f"{what} payload is not JSON: {exc}") from exc


_AWAIT_HELLO = State.AWAIT_HELLO
_OPEN = State.OPEN


class ProtocolConnection:
    """One end of a jesus stream connection. Codec and compression are fixed by the client's
    HELLO; on the server they are looked up in `codecs` / `compressions` by name."""

    def __init__(
        self,
        role: Role,
        limits: Limits,
        *,
        codec: Any = None,
        compression: Any = None,
        codecs: dict[str, Any] | None = None,
        compressions: dict[str, Any] | None = None,
    ) -> None:
        self.role = role
        self._serves = role is Role.SERVER
        self.limits = limits
        self.state = State.AWAIT_HELLO
        self.codec = codec
        self.compression = compression
        self._codecs = codecs or {}
        self._compressions = compressions or {}
        self._decoder = FrameDecoder(limits.max_message_size)
        self._next_stream_id = 1
        # The id of the last REQUEST read, in arrival order: GOAWAY's last_stream_id.
        self._last_request = 0
        self._peer_stream_window = DEFAULT_STREAM_WINDOW
        self.peer_stream_window_bytes = UNLIMITED
        self.open_streams: dict[int, ResponseMode] = {}
        self.peer_info: dict[str, Any] = {}
        # The smaller of our limit and the one the peer announced in its HELLO.
        self.max_outgoing = limits.max_message_size
        self._compress = compression is not None and compression.name != "none"
        # Server: whether stream items may go many to a frame (send_items).
        self.batches_items = False
        # Client: whether the server reads credit in bytes too (8-byte CREDIT payloads).
        self.credits_bytes = False
        self.hello_sent = False

    # ----------------------------------------------------------------- handshake

    def send_hello(self, extra: dict[str, Any] | None = None) -> bytes:
        """This end's HELLO; `extra` adds keys (a provider's `provide`, PROTOCOL.md "Node
        daemon": a server may say HELLO first)."""
        info: dict[str, Any] = {
            "protocol": "jesus",
            "version": PROTOCOL_VERSION,
            "max_message_size": self.limits.max_message_size,
            "capabilities": list(CAPABILITIES),
        }
        if self.role is Role.CLIENT:
            info["codec"] = self.codec.name
            info["compression"] = self.compression.name
            info["stream_window"] = self.limits.stream_window
            info["stream_window_bytes"] = self.limits.stream_window_bytes
        else:
            info["codec"] = self.codec.name
            info["compression"] = self.compression.name
            info["max_inflight_calls"] = self.limits.max_inflight_calls
        if extra:
            info.update(extra)
        self.hello_sent = True
        return encode_frame(FrameType.HELLO, 0, 0, _json(info))

    def received_hello(self, info: dict[str, Any]) -> ev.HelloReceived:
        """Take the peer's HELLO, read before this connection state existed (by the server
        that handed the connection over to this end), as if it had just arrived."""
        if self.state is not State.AWAIT_HELLO:
            raise LocalProtocolError("the HELLO was received already")
        return self._receive_hello(_json(info))

    @property
    def peer_stream_window(self) -> int:
        """The initial credit of each stream: the client's HELLO stream_window, or 32."""
        return self._peer_stream_window

    def _receive_hello(self, payload: bytes) -> ev.HelloReceived:
        info = _unjson(payload, "HELLO")
        if not isinstance(info, dict):
            raise RemoteProtocolError("HELLO payload must be a JSON object")
        peer = Role.CLIENT if self.role is Role.SERVER else Role.SERVER
        for key in _HELLO_REQUIRED[peer]:
            if key not in info:
                raise RemoteProtocolError(f"HELLO lacks the required key {key!r}")
        if info["protocol"] != "jesus":
            raise RemoteProtocolError("HELLO does not announce the jesus protocol")
        version = info["version"]
        if not _positive_int(version):
            raise RemoteProtocolError(f"HELLO carries an invalid version {version!r}")
        for key in _HELLO_COUNTS[peer]:
            if key in info and not _positive_int(info[key]):
                raise RemoteProtocolError(
                    f"HELLO {key} must be a positive integer, got {info[key]!r}"
                )
        if self.role is Role.SERVER:
            if version < PROTOCOL_VERSION:
                raise RemoteProtocolError(f"protocol version {version} is not supported")
            self._peer_stream_window = info.get("stream_window", DEFAULT_STREAM_WINDOW)
            self.peer_stream_window_bytes = info.get("stream_window_bytes", UNLIMITED)
            codec = self._codecs.get(str(info["codec"]))
            compression = self._compressions.get(str(info.get("compression", "none")))
            if codec is None:
                raise RemoteProtocolError(
                    f"codec {info.get('codec')!r} is not installed here "
                    f"(have: {', '.join(sorted(self._codecs))})"
                )
            if compression is None:
                raise RemoteProtocolError(
                    f"compression {info.get('compression')!r} is not installed here "
                    f"(have: {', '.join(sorted(self._compressions))})"
                )
            self.codec, self.compression = codec, compression
            self._compress = compression.name != "none"
            self.batches_items = _announces(info, "items") and hasattr(codec, "join")
        else:
            self.credits_bytes = _announces(info, "items")
        self.peer_info = info
        if "max_message_size" in info:
            self.max_outgoing = min(self.max_outgoing, info["max_message_size"])
        self.state = State.OPEN
        return ev.HelloReceived(info)

    # ----------------------------------------------------------------- payloads

    def _pack(self, value: Any) -> tuple[int, bytes]:
        return self._squeeze(self.codec.encode(value))

    def _squeeze(self, payload: bytes) -> tuple[int, bytes]:
        """Compressed when that pays, and within the size limit. Raises TooLarge."""
        flags = 0
        if self._compress and len(payload) >= self.limits.compress_threshold:
            squeezed = self.compression.compress(payload)
            if len(squeezed) < len(payload):
                payload, flags = squeezed, _COMPRESSED
        check_message_size(len(payload), self.max_outgoing)
        return flags, payload

    def _unpack(self, flags: int, payload: bytes) -> Any:
        return decode_payload(
            self.codec, self.compression, payload, bool(flags & _COMPRESSED), self.limits, False
        )[0]

    def decode_request(
        self, stream_id: int, mode: ResponseMode, flags: int, payload: bytes, inline: bool = True
    ) -> ev.RequestReceived | ev.HeavyRequestReceived | ev.RequestRejected:
        """A REQUEST's envelope, decoded. With `inline=False` it may take long, and touches
        nothing but its arguments: transports run it in a worker thread."""
        try:
            envelope, size = decode_payload(
                self.codec,
                self.compression,
                payload,
                bool(flags & _COMPRESSED),
                self.limits,
                inline,
            )
        except Heavy:
            return ev.HeavyRequestReceived(stream_id, mode, flags, payload)
        except CallError as exc:
            return ev.RequestRejected(stream_id, mode, exc)
        if not isinstance(envelope, list) or len(envelope) != 3 or not isinstance(envelope[0], str):
            return ev.RequestRejected(
                stream_id, mode, BadFrame("the envelope must be [method, meta, data]")
            )
        return ev.RequestReceived(stream_id, mode, envelope[0], envelope[1], envelope[2], size)

    # ----------------------------------------------------------------- client sends

    def send_request(
        self, method: str, meta: dict[str, Any], data: Any, mode: ResponseMode
    ) -> tuple[int, bytes]:
        """Open a call; returns its stream id and the frame. Raises TooLarge, ValueError."""
        if self.state is not _OPEN:
            raise LocalProtocolError(f"cannot send a request in state {self.state.value}")
        stream_id = self._next_stream_id
        self._next_stream_id = 1 if stream_id >= MAX_STREAM_ID else stream_id + 1
        while self._next_stream_id in self.open_streams:
            self._next_stream_id += 1
        flags, payload = self._pack([method, meta, data])
        flags |= _WIRE_MODE[mode]
        if mode is not _NO_RESPONSE:
            self.open_streams[stream_id] = mode
        return stream_id, encode_frame(_REQUEST, flags, stream_id, payload)

    def send_cancel(self, stream_id: int) -> bytes:
        self.open_streams.pop(stream_id, None)
        return encode_frame(_CANCEL, 0, stream_id)

    def send_credit(self, stream_id: int, credit: int, nbytes: int = 0) -> bytes:
        """Give back `credit` items and `nbytes` bytes (sent only to a server that reads them)."""
        if self.credits_bytes:
            return encode_frame(FrameType.CREDIT, 0, stream_id, _CREDIT2.pack(credit, nbytes))
        return encode_frame(FrameType.CREDIT, 0, stream_id, _U32.pack(credit))

    def send_ping(self, payload: bytes = b"\0" * _PING_SIZE) -> bytes:
        if len(payload) != _PING_SIZE:
            raise LocalProtocolError(f"a PING payload is {_PING_SIZE} bytes")
        return encode_frame(FrameType.PING, 0, 0, payload)

    # ----------------------------------------------------------------- server sends

    def send_response(self, stream_id: int, value: Any) -> bytes:
        flags, payload = self._pack(value)
        self.open_streams.pop(stream_id, None)
        return encode_frame(_RESPONSE, flags, stream_id, payload)

    def send_ack(self, stream_id: int) -> bytes:
        self.open_streams.pop(stream_id, None)
        return encode_frame(_ACK, 0, stream_id)

    def send_item(self, stream_id: int, value: Any) -> bytes:
        flags, payload = self._pack(value)
        return encode_frame(FrameType.ITEM, flags, stream_id, payload)

    def encode_item(self, value: Any) -> bytes:
        """A stream item's encoding, for `send_items`. Raises ValueError."""
        return self.codec.encode(value)  # type: ignore[no-any-return]

    def send_items(self, stream_id: int, parts: list[bytes]) -> bytes:
        """One frame of encoded stream items, in order: an ITEM for one, else an ITEMS (only
        when `batches_items`). Raises TooLarge past the size limit, compressed or not."""
        if len(parts) == 1:
            ftype, payload = FrameType.ITEM, parts[0]
        else:
            ftype, payload = FrameType.ITEMS, self.codec.join(parts)
        flags, payload = self._squeeze(payload)
        return encode_frame(ftype, flags, stream_id, payload)

    def send_end(self, stream_id: int) -> bytes:
        self.open_streams.pop(stream_id, None)
        return encode_frame(FrameType.END, 0, stream_id)

    def send_error(self, stream_id: int, error: CallError) -> bytes:
        self.open_streams.pop(stream_id, None)
        return encode_frame(FrameType.ERROR, 0, stream_id, _json(error.to_wire()))

    def send_goaway(self, reason: str) -> bytes:
        # Not max(open_streams): ids wrap, so the largest id is not the latest call.
        info = {"last_stream_id": self._last_request, "reason": reason}
        return encode_frame(FrameType.GOAWAY, 0, 0, _json(info))

    def send_pong(self, payload: bytes) -> bytes:
        if len(payload) != _PING_SIZE:
            raise LocalProtocolError(f"a PONG payload is {_PING_SIZE} bytes")
        return encode_frame(FrameType.PONG, 0, 0, payload)

    # ----------------------------------------------------------------- receiving

    def receive_data(self, data: bytes) -> list[ev.Event]:
        """Parse every whole frame in `data` (plus what was buffered).

        Raises RemoteProtocolError when the peer broke the protocol in a way that ends the
        connection; per-call problems come back as events instead.
        """
        out: list[ev.Event] = []
        limit = self.limits.max_message_size
        for ftype, flags, stream_id, payload in self._decoder.feed(data):
            if len(payload) > limit and ftype in _DATA_FRAMES:
                raise FrameTooLarge(
                    f"{FrameType(ftype).name} frame of {len(payload)} bytes exceeds "
                    f"max_message_size ({limit})"
                )
            if self.state is _AWAIT_HELLO:
                if ftype != _HELLO:
                    # The answer to this end's HELLO may be a refusal (a provider's too).
                    if ftype == FrameType.ERROR and (self.role is Role.CLIENT or self.hello_sent):
                        out.append(ev.ErrorReceived(0, self._error(payload)))
                        continue
                    raise RemoteProtocolError(f"expected HELLO, got frame type 0x{ftype:02x}")
                out.append(self._receive_hello(payload))
                continue
            if self._serves:
                event = self._server_frames(ftype, flags, stream_id, payload)
            else:
                event = self._client_frames(ftype, flags, stream_id, payload)
            if event is not None:
                out.append(event)
        return out

    def _error(self, payload: bytes) -> CallError:
        try:
            raw = json.loads(payload)
        except (UnicodeDecodeError, ValueError):
            raw = None
        return error_from_wire(raw)

    def _common(self, ftype: int, stream_id: int, payload: bytes) -> ev.Event | None:
        if ftype == FrameType.PING or ftype == FrameType.PONG:
            if stream_id != 0 or len(payload) != _PING_SIZE:
                raise RemoteProtocolError(
                    f"{FrameType(ftype).name} must be on stream 0 with {_PING_SIZE} bytes, "
                    f"got stream {stream_id} with {len(payload)}"
                )
            return ev.PingReceived(payload) if ftype == FrameType.PING else ev.PongReceived(payload)
        if ftype == FrameType.GOAWAY:
            info = _unjson(payload, "GOAWAY")
            if not isinstance(info, dict):
                raise RemoteProtocolError("GOAWAY payload must be a JSON object")
            last, reason = info.get("last_stream_id"), info.get("reason", "")
            if type(last) is not int or not 0 <= last <= MAX_STREAM_ID:
                raise RemoteProtocolError(f"GOAWAY last_stream_id {last!r} is not a stream id")
            return ev.GoAwayReceived(last, str(reason))
        if ftype == FrameType.HELLO:
            raise RemoteProtocolError("HELLO received twice")
        raise RemoteProtocolError(
            f"frame type {FrameType(ftype).name} is not valid from the {self._peer_role} side"
        )

    @property
    def _peer_role(self) -> str:
        return "client" if self.role is Role.SERVER else "server"

    def _server_frames(
        self, ftype: int, flags: int, stream_id: int, payload: bytes
    ) -> ev.Event | None:
        if ftype == _REQUEST:
            mode = _MODES[(flags & _MODE_MASK) >> MODE_SHIFT]
            if stream_id == 0:
                raise RemoteProtocolError("REQUEST on stream 0")
            if stream_id in self.open_streams:
                raise RemoteProtocolError(f"REQUEST reuses open stream {stream_id}")
            if mode is not _NO_RESPONSE:
                self.open_streams[stream_id] = mode
            self._last_request = stream_id
            return self.decode_request(stream_id, mode, flags, payload)
        if ftype == _CANCEL or (ftype == _ERROR and stream_id != 0):
            # A client's ERROR on a call abandons it: nothing more to say than a CANCEL.
            return ev.CancelReceived(stream_id) if stream_id in self.open_streams else None
        if ftype == _CREDIT:
            if len(payload) == 4:
                credit, nbytes = _U32.unpack(payload)[0], 0
            elif len(payload) == 8:
                credit, nbytes = _CREDIT2.unpack(payload)
            else:
                raise RemoteProtocolError("CREDIT payload must be 4 or 8 bytes")
            if stream_id not in self.open_streams:
                return None
            return ev.CreditReceived(stream_id, credit, nbytes)
        if ftype == FrameType.ERROR:
            return ev.ErrorReceived(0, self._error(payload))  # the client is closing
        return self._common(ftype, stream_id, payload)

    def _client_frames(
        self, ftype: int, flags: int, stream_id: int, payload: bytes
    ) -> ev.Event | None:
        if ftype == _ERROR:
            error = self._error(payload)
            if stream_id == 0:
                return ev.ErrorReceived(0, error)
            if self.open_streams.pop(stream_id, None) is None:
                return None
            return ev.ErrorReceived(stream_id, error)
        mode = self.open_streams.get(stream_id)
        if mode is None:
            if ftype in _STREAM_ANSWERS:
                return None  # crossed a CANCEL, or a late answer
            return self._common(ftype, stream_id, payload)
        if ftype == _RESPONSE:
            del self.open_streams[stream_id]
            try:
                return ev.ResponseReceived(stream_id, self._unpack(flags, payload), len(payload))
            except CallError as exc:
                return ev.ErrorReceived(stream_id, exc)
        if ftype == _ITEM:
            try:
                return ev.ItemReceived(stream_id, self._unpack(flags, payload), len(payload))
            except CallError as exc:
                del self.open_streams[stream_id]
                return ev.ErrorReceived(stream_id, exc)
        if ftype == _ITEMS:
            try:
                values = self._unpack(flags, payload)
            except CallError as exc:
                del self.open_streams[stream_id]
                return ev.ErrorReceived(stream_id, exc)
            if type(values) is not list or not values:
                del self.open_streams[stream_id]
                return ev.ErrorReceived(
                    stream_id, BadFrame("an ITEMS payload must be a non-empty array")
                )
            return ev.ItemsReceived(stream_id, values, len(payload))
        if ftype == _ACK:
            del self.open_streams[stream_id]
            return ev.AckReceived(stream_id)
        if ftype == _END:
            del self.open_streams[stream_id]
            return ev.EndReceived(stream_id)
        return self._common(ftype, stream_id, payload)
