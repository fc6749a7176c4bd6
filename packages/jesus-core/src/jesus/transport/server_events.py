"""What a server does with the events of a connection's frames, for every transport that
carries PROTOCOL.md frames: requests admitted to the session with a `FrameReply`, CANCEL and
CREDIT applied to the call they name, HELLO and PING answered."""

from __future__ import annotations

import logging

from jesus.messages import ResponseMode
from jesus.protocol import wire_events as ev
from jesus.protocol.connection import ProtocolConnection
from jesus.transport.reply import FrameReply
from jesus.transport.runner import Session
from jesus.transport.writer import FrameSink

log = logging.getLogger("jesus.transport")
# The HELLO key of a process that offers services over the connection it opened.
PROVIDE = "provide"
_NO_RESPONSE = ResponseMode.NO_RESPONSE


def handle_server_event(
    event: ev.Event, session: Session, proto: ProtocolConnection, writer: FrameSink
) -> bool:
    """Apply `event`; False for one this does not know (the transport's own, e.g. a PONG)."""
    kind = type(event)
    if kind is ev.RequestReceived:
        sid, mode = event.stream_id, event.mode  # type: ignore[union-attr]
        session.admit(
            sid,
            event.method,  # type: ignore[union-attr]
            event.meta,  # type: ignore[union-attr]
            event.data,  # type: ignore[union-attr]
            mode,
            FrameReply(proto, writer, sid, mode is not _NO_RESPONSE),
            event.size,  # type: ignore[union-attr]
        )
    elif kind is ev.CreditReceived:
        record = session.calls.get(event.stream_id)  # type: ignore[union-attr]
        if record is not None:
            record.reply.grant(event.credit, event.nbytes)  # type: ignore[attr-defined, union-attr]
    elif kind is ev.CancelReceived:
        session.cancel(event.stream_id)  # type: ignore[union-attr]
    elif kind is ev.RequestRejected:
        sid, mode = event.stream_id, event.mode  # type: ignore[union-attr]
        reply = FrameReply(proto, writer, sid, mode is not _NO_RESPONSE)
        session.refuse("(undecodable)", mode, reply, event.error)  # type: ignore[union-attr]
    elif kind is ev.HelloReceived:
        # A HELLO that offers services (`provide`) is answered by the handler the transport
        # hands the connection to; a provider's own HELLO went first.
        if not proto.hello_sent and PROVIDE not in event.info:  # type: ignore[union-attr]
            writer.write(proto.send_hello())
    elif kind is ev.PingReceived:
        writer.write(proto.send_pong(event.payload))  # type: ignore[union-attr]
    elif kind is ev.ErrorReceived:
        log.warning("peer reported an error: %s", event.error)  # type: ignore[union-attr]
    else:
        return False
    return True
