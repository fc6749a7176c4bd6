"""One call's span and measurements, from its start to its outcome.

Outcomes, as `rpc.status_code` and `error.type`:
- success: `OK`, no error;
- a jesus error (a `CallError`, from this side or the peer): its code, e.g.
  `INVALID_REQUEST`, `UNAVAILABLE`; `CANCELLED` is not counted as an error;
- a handler's own exception (server side): `REMOTE_FAILURE`, what the caller is answered,
  with the exception recorded on the span;
- any other exception on the client side: no status code, `error.type` its class;
- cancelled (the caller left a stream, or cancelled the call): `CANCELLED`, not an error,
  unless the call's deadline had passed: `DEADLINE_EXCEEDED`.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
from opentelemetry.trace import Span, Status, StatusCode

from jesus.errors import CallError
from jesus_otel import semconv as sc
from jesus_otel.describe import Description
from jesus_otel.instruments import Side


class Recording:
    __slots__ = ("deadline", "description", "server", "side", "span", "started")

    def __init__(
        self,
        description: Description,
        span: Span | None,
        side: Side | None,
        server: bool,
        deadline: float | None,
    ) -> None:
        """`deadline`: when the call's deadline passes, on the anyio clock, if it has one."""
        self.description = description
        self.deadline = deadline
        self.span = span
        self.side = side
        self.server = server
        self.started = time.perf_counter()
        if side is not None:
            side.active.add(1, description.metric)

    def end(self, error: BaseException | None) -> None:
        code, error_type = _outcome(error, self.deadline, self.server)
        description, span, side = self.description, self.span, self.side
        if span is not None:
            if code is not None and not description.event:
                span.set_attribute(sc.RPC_STATUS_CODE, code)
            if error_type is not None:
                span.set_attribute(sc.ERROR_TYPE, error_type)
                span.set_status(Status(StatusCode.ERROR, _message(error)))
                if self.server and not isinstance(error, CallError):
                    span.record_exception(error)  # type: ignore[arg-type]
            span.end()
        if side is None:
            return
        metric = description.metric
        side.active.add(-1, metric)
        outcome: dict[str, Any] = dict(metric)
        if code is not None and not description.event:
            outcome[sc.RPC_STATUS_CODE] = code
        if error_type is not None:
            outcome[sc.ERROR_TYPE] = error_type
            side.errors.add(1, outcome)
        elapsed = time.perf_counter() - self.started
        if description.event:
            side.event_duration.record(elapsed, outcome)
            side.events.add(1, outcome)
        else:
            side.call_duration.record(elapsed, outcome)


def _outcome(
    error: BaseException | None, deadline: float | None, server: bool
) -> tuple[str | None, str | None]:
    """(rpc.status_code, error.type) of a call that ended with `error`."""
    if error is None:
        return sc.OK, None
    if isinstance(error, CallError):
        return error.code, None if error.code == sc.CANCELLED else error.code
    if not isinstance(error, Exception):  # cancelled (GeneratorExit, the backend's)
        if deadline is not None and anyio.current_time() >= deadline:
            return sc.DEADLINE_EXCEEDED, sc.DEADLINE_EXCEEDED
        return sc.CANCELLED, None
    if server:
        return sc.REMOTE_FAILURE, sc.REMOTE_FAILURE
    kind = type(error)
    return None, f"{kind.__module__}.{kind.__qualname__}"


def _message(error: BaseException | None) -> str | None:
    if isinstance(error, CallError):
        return error.message
    return None if error is None else str(error)
