"""The server-side life of a call, written once for every transport.

A transport decodes a request and hands it to its peer's `Session` with a `Reply`; the
runner does the rest:

1. admission: refused while the server drains, past `max_inflight_calls` (a stream transport
   waits for `Session.room()` before a noResponse call instead) or the decoded-bytes
   budgets (`max_inflight_bytes` for the peer, `max_server_inflight_bytes` for the server), or
   in a mode the transport cannot carry;
2. the handler's checks (`CallHandler.prepare`: method, mode, meta, request schema);
3. the ack, for ack mode, before the handler runs (after it, for a relay's call:
   `PreparedCall.ack_after_run`);
4. the handler, in a task of its own, cancelled at the caller's deadline;
5. the answer: the result, each stream item, or the error (a deadline passed is answered
   DEADLINE_EXCEEDED), through the Reply;
6. what cannot be answered (a failed noResponse or ack call, an answer that fails its own
   response schema) is logged.

When a peer goes away (`Session.close`), the calls it still waits on (response, stream) are
cancelled; calls it no longer waits on (ack, noResponse, already accepted) run to their end.
"""

from __future__ import annotations

import collections
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from jesus.errors import (
    CallError,
    DeadlineExceeded,
    InvalidRequest,
    InvalidResponse,
    Unavailable,
    explained,
)
from jesus.limits import Limits
from jesus.messages import ResponseMode
from jesus.security.caller import ANONYMOUS, Caller
from jesus.transport.contract import CallHandler, PreparedCall, Reply
from jesus.transport.spawner import CallSpawner

log = logging.getLogger("jesus.server")

T = TypeVar("T")
# Heavy payloads decoded at once in worker threads, server-wide: decoding is CPU-bound, and
# each holds up to max_decompressed_size bytes while it runs.
OFFLOAD_THREADS = 2

_RESPONSE = ResponseMode.RESPONSE
_STREAM = ResponseMode.STREAM
_ACK = ResponseMode.ACK
_NO_RESPONSE = ResponseMode.NO_RESPONSE


def _answered(call: PreparedCall) -> bool:
    """Whether the caller still waits for this call's outcome once it runs."""
    mode = call.meta.mode
    return mode is _RESPONSE or mode is _STREAM or (mode is _ACK and call.ack_after_run)


class _Call:
    """One admitted call: the spawner's key, so its task can be found and cancelled."""

    __slots__ = ("call", "key", "reply", "session", "size")

    def __init__(
        self, session: Session, key: Any, call: PreparedCall, reply: Reply, size: int
    ) -> None:
        self.session = session
        self.key = key
        self.call = call
        self.reply = reply
        self.size = size  # decoded bytes, charged to the budgets until the call ends


class CallRunner:
    """Runs the calls of one server. `bind(task_group)` before the first call (the calls'
    tasks live there); `drain()` refuses new calls and waits for those in flight."""

    def __init__(
        self,
        handler: CallHandler,
        limits: Limits,
        modes: frozenset[ResponseMode] = frozenset(ResponseMode),
    ) -> None:
        self.handler = handler
        self.limits = limits
        self.modes = modes
        self.closing = False
        self._spawner: CallSpawner | None = None
        self._cancelled: type[BaseException] = BaseException  # the backend's, once bound
        # noResponse calls refused, by error code (they have no caller to tell).
        self.refused: collections.Counter[str] = collections.Counter()
        self._last_refusal_log = -math.inf
        self.inflight_bytes = 0  # decoded bytes of every call in flight
        self._offload: anyio.CapacityLimiter | None = None

    def bind(self, task_group: TaskGroup) -> None:
        self._spawner = CallSpawner(task_group, self._done)
        self._cancelled = anyio.get_cancelled_exc_class()
        self._offload = anyio.CapacityLimiter(OFFLOAD_THREADS)

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn` (a heavy decode) in a worker thread, at most OFFLOAD_THREADS at once."""
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._offload)

    def session(self, caller: Caller = ANONYMOUS) -> Session:
        """The calls of one peer: a connection, or every sender of a datagram socket.
        `caller` is who the transport proved the peer to be (`jesus.transport.peer_of`)."""
        return Session(self, caller)

    async def drain(self) -> None:
        """Refuse new calls (UNAVAILABLE) and wait until no call runs."""
        self.closing = True
        if self._spawner is not None:
            await self._spawner.wait_idle()

    async def aclose(self) -> None:
        """Cancel what still runs and wait for it."""
        self.closing = True
        if self._spawner is not None:
            await self._spawner.aclose()

    # ------------------------------------------------------------------ admission

    def _admit(
        self,
        session: Session,
        key: Any,
        method: str,
        raw_meta: Any,
        data: Any,
        mode: ResponseMode,
        reply: Reply,
        size: int,
    ) -> None:
        if self.closing:
            return self._refuse(method, mode, reply, Unavailable("server is shutting down"))
        if session.inflight >= self.limits.max_inflight_calls:
            return self._refuse(
                method,
                mode,
                reply,
                Unavailable(
                    f"too many calls in flight from this peer "
                    f"(max_inflight_calls={self.limits.max_inflight_calls})"
                ),
            )
        if size and (over := self._over_budget(session, size)):
            return self._refuse(method, mode, reply, Unavailable(over))
        if mode not in self.modes:
            return self._refuse(
                method,
                mode,
                reply,
                InvalidRequest(
                    f"{mode.value} calls are not carried by this transport; a stream needs a "
                    f"stream channel (tcp, unix, http)"
                ),
            )
        try:
            call = self.handler.prepare(method, raw_meta, data, mode, session.caller)
        except CallError as exc:
            return self._refuse(method, mode, reply, exc)
        call.size = size
        meter = call.meter
        meter.received += size
        reply.meter = meter
        record = _Call(session, key, call, reply, size)
        # A key may come again while an older call under it still runs (a tcp stream id is
        # free again once a noResponse call is sent or an ack call is acked): the newest
        # takes the key, for cancel and credit; the count covers both.
        session.calls[key] = record
        session.inflight += 1
        session.inflight_bytes += size
        self.inflight_bytes += size
        if mode is _STREAM:
            job = self._stream
        else:
            if (mode is _ACK and not call.ack_after_run) or (
                mode is _NO_RESPONSE and reply.always_answers
            ):
                reply.ack()
            job = self._call
        assert self._spawner is not None, "CallRunner.bind() was not called"
        self._spawner.spawn(record, job, record, deadline=call.deadline)

    def _over_budget(self, session: Session, size: int) -> str:
        """Why a request of `size` decoded bytes cannot be taken now, or "". A request is
        always taken when nothing else is in flight (max_decompressed_size bounds it)."""
        limits = self.limits
        if session.inflight_bytes and session.inflight_bytes + size > limits.max_inflight_bytes:
            return (
                f"this peer's calls in flight hold {session.inflight_bytes} decoded bytes "
                f"(max_inflight_bytes={limits.max_inflight_bytes}); retry when they finish"
            )
        if self.inflight_bytes and self.inflight_bytes + size > limits.max_server_inflight_bytes:
            return (
                f"the server's calls in flight hold {self.inflight_bytes} decoded bytes "
                f"(max_server_inflight_bytes={limits.max_server_inflight_bytes})"
            )
        return ""

    def _refuse(self, method: str, mode: ResponseMode, reply: Reply, error: CallError) -> None:
        if mode is _NO_RESPONSE and not reply.always_answers:
            self._log_refusal(method, error)
        else:
            reply.error(error)
        reply.close()

    def _log_refusal(self, method: str, error: CallError) -> None:
        """Nobody waits for a refused noResponse call, so the log is where it shows; at most
        once a second, with the totals, so that a flood of them cannot flood the log."""
        self.refused[error.code] += 1
        now = time.monotonic()
        if now - self._last_refusal_log >= 1.0:
            self._last_refusal_log = now
            log.warning(
                "refused a noResponse call to %s: %s [refused so far: %s]",
                method,
                explained(error),
                dict(self.refused),
            )

    def _cancel(self, record: _Call) -> None:
        if self._spawner is not None:
            self._spawner.cancel(record)

    def _done(self, record: _Call) -> None:
        session = record.session
        session.inflight -= 1
        if session._room is not None:
            session._room.set()
            session._room = None
        session.inflight_bytes -= record.size
        self.inflight_bytes -= record.size
        if session.calls.get(record.key) is record:
            del session.calls[record.key]
        if record.reply.open and _answered(record.call):
            # Cancelled before it ran (its coroutine never started): a deadline that passed
            # still gets its answer.
            self._maybe_deadline(record.call, record.reply)
        record.reply.close()
        if record.call.release is not None:
            record.call.release()

    # ------------------------------------------------------------------ running

    async def _call(self, record: _Call) -> None:
        call, reply = record.call, record.reply
        mode = call.meta.mode
        try:
            result = await self.handler.run(call)
            if mode is _RESPONSE and reply.open:
                try:
                    pending = reply.result(result)
                    if pending is not None:
                        await pending
                except ValueError as exc:
                    raise InvalidResponse(str(exc), corrid=call.meta.corrid) from None
            elif mode is _ACK and call.ack_after_run and reply.open:
                reply.ack()
        except CallError as exc:
            self._failed(call, reply, exc)
        except self._cancelled:
            self._maybe_deadline(call, reply)
            raise

    async def _stream(self, record: _Call) -> None:
        call, reply = record.call, record.reply
        items = self.handler.open_stream(call)
        try:
            async for item in items:
                try:
                    pending = reply.item(item)
                    if pending is not None:
                        await pending
                except ValueError as exc:
                    raise InvalidResponse(str(exc), corrid=call.meta.corrid) from None
                if not reply.open:
                    return  # the peer left or cancelled
            if reply.open:
                reply.end()
        except CallError as exc:
            self._failed(call, reply, exc)
        except self._cancelled:
            self._maybe_deadline(call, reply)
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await items.aclose()  # type: ignore[attr-defined]

    def _failed(self, call: PreparedCall, reply: Reply, error: CallError) -> None:
        if error.corrid is None:
            error.corrid = call.meta.corrid
        if isinstance(error, InvalidResponse) and not error.remote:
            log.warning("%s gave an invalid answer [corrid=%s]: %s", call.name, error.corrid, error)
        if not _answered(call):
            log.warning(
                "%s call to %s failed after it was accepted: %s",
                call.meta.mode.value,
                call.name,
                error,
            )
        elif reply.open:
            reply.error(error)

    @staticmethod
    def _maybe_deadline(call: PreparedCall, reply: Reply) -> None:
        """A cancelled call whose deadline passed gets DEADLINE_EXCEEDED (others, cancelled
        by the peer or by shutdown, get nothing)."""
        if call.deadline is None or anyio.current_time() < call.deadline:
            return
        if reply.open and _answered(call):
            error = DeadlineExceeded(
                f"{call.name} ran past the caller's deadline", corrid=call.meta.corrid
            )
            reply.error(error)
        else:
            log.warning("%s ran past its deadline [corrid=%s]", call.name, call.meta.corrid)


class Session:
    """The calls of one peer. The transport calls `admit` for each decoded request, `cancel`
    when the peer abandons one, and `close` when the peer is gone."""

    __slots__ = ("_room", "caller", "calls", "inflight", "inflight_bytes", "runner")

    def __init__(self, runner: CallRunner, caller: Caller = ANONYMOUS) -> None:
        self.runner = runner
        self.caller = caller
        self.calls: dict[Any, _Call] = {}  # key (the transport's call id) -> admitted call
        self.inflight = 0  # admitted calls still running
        self.inflight_bytes = 0  # their decoded size
        self._room: anyio.Event | None = None  # set when a call ends, for room()

    @property
    def full(self) -> bool:
        """True while the peer has `max_inflight_calls` calls running: another is refused."""
        return self.inflight >= self.runner.limits.max_inflight_calls

    async def room(self) -> None:
        """Return once another call would be admitted. A stream transport waits here, not
        reading on, before it hands over a noResponse call: nobody could be told of its
        refusal, and the socket's back-pressure slows the sender down instead."""
        while self.full:
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()

    def admit(
        self,
        key: Any,
        method: str,
        raw_meta: Any,
        data: Any,
        mode: ResponseMode,
        reply: Reply,
        size: int = 0,
    ) -> None:
        """Admit, check and start one call; every outcome goes to `reply`. `key` names the
        call within this session (a stream id, a message id); `size` is the request's decoded
        size in bytes (`jesus.payload.decode_payload` gives it)."""
        self.runner._admit(self, key, method, raw_meta, data, mode, reply, size)

    def refuse(self, method: str, mode: ResponseMode, reply: Reply, error: CallError) -> None:
        """Answer a request the transport could not even decode (or log it, for noResponse)."""
        self.runner._refuse(method, mode, reply, error)

    def cancel(self, key: Any) -> None:
        record = self.calls.get(key)
        if record is not None:
            record.reply.open = False
            self.runner._cancel(record)

    def close(self) -> None:
        """The peer is gone: stop the calls that would answer it."""
        for record in list(self.calls.values()):
            if record.call.meta.mode in (_RESPONSE, _STREAM):
                record.reply.open = False
                self.runner._cancel(record)

    def __len__(self) -> int:
        return self.inflight
