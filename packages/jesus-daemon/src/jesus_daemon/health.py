"""Health endpoints of the daemon, for an orchestrator's probes (docs/daemon.md, "Kubernetes").

Plain HTTP/1.1 on TCP, one request per connection:

- `GET /livez`: 200 while the daemon runs.
- `GET /readyz`: 200 once the registry answers, else 503 with the reason on one line.
- any other path: 404; another method: 405; a request that is not HTTP: 400.

The registry is asked at most once a second however often probes come, and with one look-up
of a single service name, so a probe costs one round trip whatever the registry holds.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import Listener, SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from jesus.errors import ConfigurationError, RegistryError
from jesus.registry.base import RegistryBackend
from jesus.registry.resolver import bounded

log = logging.getLogger("jesus.daemon")

LIVE_PATH = "/livez"
READY_PATH = "/readyz"
# Listed to see whether the registry answers; nobody needs to register it.
PROBE_SERVICE = "jesus-daemon-readiness"

MAX_HEAD = 8192  # request line and headers
REQUEST_TIMEOUT = 5.0  # a client that sends nothing is let go
MAX_CONNECTIONS = 32  # more at once are closed at once: probes come one at a time

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class Readiness:
    """Whether the registry answers `list_instances` within `timeout`, the answer kept for
    `cache` seconds; probes arriving during a check share it."""

    def __init__(self, backend: RegistryBackend, timeout: float = 1.0, cache: float = 1.0):
        self.backend = backend
        self.timeout = timeout
        self.cache = cache
        self._checked: float | None = None
        self._reason: str | None = None
        self._lock = anyio.Lock()

    async def reason(self) -> str | None:
        """None when ready, else why not (one line)."""
        if self._fresh():
            return self._reason
        async with self._lock:
            if not self._fresh():  # not answered by the check we waited for
                self._reason = await self._check()
                self._checked = anyio.current_time()
        return self._reason

    def _fresh(self) -> bool:
        return self._checked is not None and anyio.current_time() - self._checked < self.cache

    async def _check(self) -> str | None:
        try:
            await bounded(self.timeout, "readiness", self.backend.list_instances, PROBE_SERVICE)
        except RegistryError as exc:
            return " ".join(f"registry unreachable: {exc}".split())
        return None


def parse_health_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::]:PORT` for IPv6); port 0 picks a free one."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigurationError(f"health address {address!r} must be HOST:PORT")
    return host, int(port)


class HealthServer:
    """The health endpoints, bound: `address` is `host:port` (the port picked when 0)."""

    def __init__(self, listener: Listener[SocketStream], readiness: Readiness) -> None:
        self._listener = listener
        self.readiness = readiness
        bound = listener.extra(SocketAttribute.local_address)
        self.address = f"{_host(bound[0])}:{bound[1]}"
        self._slots = anyio.Semaphore(MAX_CONNECTIONS)

    @classmethod
    async def listen(cls, address: str, backend: RegistryBackend) -> HealthServer:
        """Bound at once, so a bad or busy address is a ConfigurationError before serving."""
        host, port = parse_health_address(address)
        try:
            listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot listen for health probes on {address}: {exc.strerror or exc}"
            ) from None
        return cls(listener, Readiness(backend))

    async def serve(self) -> None:
        """Answer probes until cancelled, then close."""
        async with self._listener:
            await self._listener.serve(self._handle)

    async def _handle(self, stream: SocketStream) -> None:
        async with stream:
            if self._slots.value == 0:
                return
            async with self._slots:
                try:
                    with anyio.move_on_after(REQUEST_TIMEOUT):
                        await _answer(stream, self.readiness)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass  # the prober went away
                except Exception:  # a bug here must not stop the probes
                    log.exception("health request failed")


def _host(host: Any) -> str:
    return f"[{host}]" if ":" in str(host) else str(host)


async def _answer(stream: SocketStream, readiness: Readiness) -> None:
    reader = BufferedByteReceiveStream(stream)
    try:
        head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
    except anyio.DelimiterNotFound:
        await _respond(stream, 400, f"request head over {MAX_HEAD} bytes", head_only=False)
        return
    except (anyio.IncompleteRead, anyio.EndOfStream):
        return  # closed before the request was whole: nobody to answer
    method, path, error = _request_line(head.split(b"\r\n", 1)[0])
    head_only = method == "HEAD"
    if error is not None:
        await _respond(stream, 400, error, head_only=False)
    elif method not in ("GET", "HEAD"):
        await _respond(stream, 405, f"{method} is not allowed: GET or HEAD", head_only)
    elif path == LIVE_PATH:
        await _respond(stream, 200, "live", head_only)
    elif path == READY_PATH:
        reason = await readiness.reason()
        if reason is None:
            await _respond(stream, 200, "ready", head_only)
        else:
            await _respond(stream, 503, reason, head_only)
    else:
        await _respond(stream, 404, f"no {path}: {LIVE_PATH} or {READY_PATH}", head_only)


def _request_line(line: bytes) -> tuple[str, str, str | None]:
    """(method, path, None), or an error saying what is wrong."""
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        return "", "", "the request line is not METHOD TARGET HTTP/1.x"
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return "", "", f"{version[:20]!r} is not HTTP/1.0 or HTTP/1.1"
    if not method.isalpha() or not method.isupper():
        return "", "", f"{method[:20]!r} is not a method"
    if not target.startswith("/"):
        return "", "", "the target must be a path"
    return method, target.partition("?")[0], None


async def _respond(stream: SocketStream, status: int, text: str, head_only: bool) -> None:
    body = (text + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n"
    )
    if status == 405:
        head += "Allow: GET, HEAD\r\n"
    await stream.send(head.encode() + b"\r\n" + (b"" if head_only else body))
    # Closing with unread bytes would reset the connection and could lose the answer.
    await stream.send_eof()
    with anyio.move_on_after(1):
        unread = 0
        while unread < 65536:
            try:
                unread += len(await stream.receive())
            except anyio.EndOfStream:
                break
