"""Every exception jesus raises.

    JesusError
    ├── ConfigurationError          a service, channel or plugin is set up wrongly
    │   ├── ChannelNotInstalled     the channel's plugin is missing (names the extra)
    │   ├── SchemaError             a declared JSON Schema is itself invalid
    │   └── IncompatibleSchemas     a starting service would break a peer, or a peer it
    ├── ProtocolError               bytes on the wire broke PROTOCOL.md
    │   ├── LocalProtocolError      ... by us
    │   └── RemoteProtocolError     ... by the peer
    │       └── FrameTooLarge       ... with a frame over max_message_size
    ├── RegistryError               the registry backend failed
    ├── EventNotDelivered           an acknowledged event did not reach every group
    └── CallError                   a call failed; travels over the wire as {code, message}
        ├── UnknownMethod           UNKNOWN_METHOD
        ├── InvalidRequest          INVALID_REQUEST
        ├── InvalidResponse         INVALID_RESPONSE
        ├── DeadlineExceeded        DEADLINE_EXCEEDED (also a TimeoutError)
        ├── Unavailable             UNAVAILABLE (retryable: no instance, refused, overloaded)
        │   ├── ServiceNotFound     no live instance in the registry (or none that fits)
        │   ├── ResourceExhausted   RESOURCE_EXHAUSTED (a method's concurrency limit; retry after)
        │   ├── HandshakeRefused    TLS refused the connection (another instance may take it)
        │   └── ConnectionLost      the connection broke with the call in flight (may have run)
        ├── WrongChannel            WRONG_CHANNEL (not served over the transport it came by)
        ├── PermissionDenied        PERMISSION_DENIED (the proven caller is not allowed)
        ├── SealRefused             SEAL_REFUSED (missing, altered, replayed, untrusted seal)
        ├── TooLarge                TOO_LARGE
        ├── Cancelled               CANCELLED
        ├── BadFrame                PROTOCOL_ERROR
        └── RemoteFailure           REMOTE_FAILURE (the handler raised)

A `CallError` carries the corrid of the call and, when it came from a peer, `remote=True`.
Two class properties say what a caller may do next: `retryable` (the failure is transient:
another attempt, maybe on another instance, can succeed) and `may_have_run` (the handler may
have run, so replaying a non-idempotent call is unsafe). A call may be tried again when
`safe_to_retry(idempotent)`: retryable, and either idempotent or sure not to have run.

Exceptions of the libraries below (anyio, ssl, socket, httptools, pymemcache) never reach a
user: each boundary translates them with `map_exceptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

__all__ = [
    "BadFrame",
    "CallError",
    "Cancelled",
    "ChannelNotInstalled",
    "ConfigurationError",
    "ConnectionLost",
    "DeadlineExceeded",
    "EventNotDelivered",
    "FrameTooLarge",
    "HandshakeRefused",
    "IncompatibleSchemas",
    "InvalidRequest",
    "InvalidResponse",
    "JesusError",
    "LocalProtocolError",
    "PermissionDenied",
    "ProtocolError",
    "RegistryError",
    "RemoteFailure",
    "RemoteProtocolError",
    "ResourceExhausted",
    "SchemaError",
    "SealRefused",
    "ServiceNotFound",
    "TooLarge",
    "Unavailable",
    "UnknownMethod",
    "WrongChannel",
    "error_from_wire",
    "explained",
    "map_exceptions",
]


class JesusError(Exception):
    """Base of every jesus exception."""


class ConfigurationError(JesusError):
    pass


class ChannelNotInstalled(ConfigurationError):
    pass


class SchemaError(ConfigurationError):
    pass


class IncompatibleSchemas(ConfigurationError):
    """A service refused to start: its schemas and those of running peers do not fit.
    `report` (jesus.compat.Report) names each incompatible field and why."""

    def __init__(self, report: Any) -> None:
        super().__init__("incompatible with running services:\n" + report.text())
        self.report = report


class ProtocolError(JesusError):
    pass


class LocalProtocolError(ProtocolError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class FrameTooLarge(RemoteProtocolError):
    """The peer sent a frame larger than max_message_size (answered TOO_LARGE on stream 0)."""


class RegistryError(JesusError):
    pass


class RegistryLimit(RegistryError):
    """The registry cannot hold a record or an index (memcached's item size limit): trying
    again cannot help, so serve() refuses to start instead of running unseen. The message
    names the limit and the remedy."""


class EventNotDelivered(JesusError):
    """Raised by an `ack` emit when some listener groups did not acknowledge the event;
    `failures` maps each such group to the error it last gave."""

    def __init__(self, event: str, failures: dict[str, Exception], delivered: list[str]) -> None:
        detail = "; ".join(
            f"{group}: {explained(error)}" for group, error in sorted(failures.items())
        )
        super().__init__(f"event {event!r} not delivered to {len(failures)} group(s): {detail}")
        self.event = event
        self.failures = failures
        self.delivered = delivered

    @property
    def details(self) -> dict[str, Any]:
        """Per group that refused the event, the fields at fault (a schema's refusal)."""
        return {
            group: error.details
            for group, error in self.failures.items()
            if isinstance(error, CallError) and error.details
        }


class CallError(JesusError):
    code: ClassVar[str] = "REMOTE_FAILURE"
    # Another attempt can succeed (the instance was busy, unreachable, going away).
    retryable: ClassVar[bool] = False
    # The handler may have run before the error: a non-idempotent call must not be replayed.
    may_have_run: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        corrid: str | None = None,
        details: Any = None,
        remote: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.corrid = corrid
        self.details = details
        self.remote = remote

    @classmethod
    def safe_to_retry(cls, idempotent: bool) -> bool:
        """Whether another attempt of a call that failed so may be made."""
        return cls.retryable and (idempotent or not cls.may_have_run)

    def __str__(self) -> str:
        where = " (remote)" if self.remote else ""
        corrid = f" [corrid={self.corrid}]" if self.corrid else ""
        return f"{self.code}{where}: {self.message}{corrid}"

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.corrid is not None:
            out["corrid"] = self.corrid
        if self.details is not None:
            out["details"] = self.details
        return out


def explained(error: BaseException) -> str:
    """An error on one line with what it says is at fault (a CallError's `details`, e.g.
    the fields a schema refused): for logs and summaries, where details would be lost."""
    details = getattr(error, "details", None)
    if not details or not isinstance(error, CallError):
        return str(error)
    listed = details if isinstance(details, list) else [details]
    return f"{error}: " + "; ".join(str(d) for d in listed)


class UnknownMethod(CallError):
    code = "UNKNOWN_METHOD"


class InvalidRequest(CallError):
    code = "INVALID_REQUEST"


class InvalidResponse(CallError):
    code = "INVALID_RESPONSE"
    may_have_run = True


class DeadlineExceeded(CallError, TimeoutError):
    """Not retryable: the deadline is the whole call's, every attempt's included."""

    code = "DEADLINE_EXCEEDED"
    may_have_run = True


class Unavailable(CallError):
    code = "UNAVAILABLE"
    retryable = True


class ServiceNotFound(Unavailable):
    pass


class ResourceExhausted(Unavailable):
    """The method runs as many calls as its `concurrency` allows; the handler did not run.
    `retry_after` (seconds, from `details`) is when a slot is likely free."""

    code = "RESOURCE_EXHAUSTED"

    @property
    def retry_after(self) -> float:
        details = self.details if isinstance(self.details, dict) else {}
        value = details.get("retry_after_ms")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return 0.0
        return min(max(float(value), 0.0), 60_000.0) / 1000


class HandshakeRefused(Unavailable):
    """TLS refused the connection (a certificate not trusted, or missing): another instance
    may take the call, but trying this one again would fail the same way."""

    retryable = False


class ConnectionLost(Unavailable):
    """The connection broke while the call was in flight: the server may have run it, so
    only an idempotent call is tried again."""

    may_have_run = True


class WrongChannel(CallError):
    """The method exists but is not served over the transport the call came by."""

    code = "WRONG_CHANNEL"


class PermissionDenied(CallError):
    """The caller, as its certificate, seal or peer credentials prove it, may not call this."""

    code = "PERMISSION_DENIED"


class SealRefused(CallError):
    """A sealed method's request came unsealed, altered, replayed, too old, for a key the
    recipient does not hold, or from a certificate it does not trust (or its answer did)."""

    code = "SEAL_REFUSED"


class TooLarge(CallError):
    code = "TOO_LARGE"


class Cancelled(CallError):
    code = "CANCELLED"
    may_have_run = True


class BadFrame(CallError):
    code = "PROTOCOL_ERROR"


class RemoteFailure(CallError):
    code = "REMOTE_FAILURE"
    may_have_run = True


_BY_CODE: dict[str, type[CallError]] = {
    cls.code: cls
    for cls in (
        UnknownMethod,
        InvalidRequest,
        InvalidResponse,
        DeadlineExceeded,
        Unavailable,
        ResourceExhausted,
        WrongChannel,
        PermissionDenied,
        SealRefused,
        TooLarge,
        Cancelled,
        BadFrame,
        RemoteFailure,
    )
}


def error_from_wire(raw: Any, corrid: str | None = None) -> CallError:
    """Rebuild the typed error a peer sent; anything malformed becomes a RemoteFailure."""
    if not isinstance(raw, dict):
        return RemoteFailure(f"malformed error payload: {raw!r:.200}", corrid=corrid, remote=True)
    cls = _BY_CODE.get(str(raw.get("code")), RemoteFailure)
    message = str(raw.get("message", ""))
    return cls(
        message,
        corrid=raw.get("corrid", corrid) if isinstance(raw.get("corrid"), str) else corrid,
        details=raw.get("details"),
        remote=True,
    )


ErrorFactory = Callable[[str], Exception]


@contextlib.contextmanager
def map_exceptions(
    mapping: Mapping[type[BaseException] | tuple[type[BaseException], ...], ErrorFactory],
    context: str,
) -> Iterator[None]:
    """Translate library exceptions at a boundary: the first matching entry of `mapping`
    builds the jesus error from `context` and the original message.

        with map_exceptions({OSError: Unavailable}, f"cannot connect to {endpoint}"):
            stream = await anyio.connect_tcp(host, port)
    """
    try:
        yield
    except JesusError:
        raise
    except Exception as exc:
        for source, target in mapping.items():
            if isinstance(exc, source):
                raise target(f"{context}: {str(exc) or type(exc).__name__}") from exc
        raise
