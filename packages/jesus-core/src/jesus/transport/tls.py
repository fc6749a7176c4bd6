"""TLS on the server side of every transport that carries it, and what a failed handshake
tells each end.

anyio's TLSListener drops a refused peer without the TLS alert that says why (it stays in
the memory BIO) and logs a traceback per peer. Here the alert goes out, so the client can
say "the server requires a client certificate" rather than "connection closed", and the
server logs one line per refused peer.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import SocketAttribute, TaskGroup
from anyio.streams.tls import TLSListener, TLSStream

from jesus.throttled_log import ThrottledLog

log = logging.getLogger("jesus.tls")

# OpenSSL reason codes, as ssl.SSLError.reason gives them, and what they mean to a caller.
_REASONS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate (mutual "
    "TLS): give this client a certificate its CA signed",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer sent no client certificate, and one is "
    "required (mutual TLS)",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust this client's certificate (it was "
    "not issued by a CA the server trusts)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server refused this client's certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server refused this client's certificate: it "
    "has expired",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server refused this client's certificate",
    "TLSV1_ALERT_DECRYPT_ERROR": "the client's certificate and key do not match",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS on this port (plaintext?)",
    "HTTP_REQUEST": "the peer sent plaintext HTTP to a TLS port",
    "UNSUPPORTED_PROTOCOL": "the two ends share no TLS version",
    "NO_SHARED_CIPHER": "the two ends share no cipher",
    "UNEXPECTED_EOF_WHILE_READING": "the peer hung up during the handshake (does it trust "
    "this end's certificate?)",
}

# X509_V_ERR_* codes of an unknown issuer, and what to look at.
_UNKNOWN_ISSUER = " (is the CA that issued it among this end's trust anchors?)"
_VERIFY_HINTS = {18: _UNKNOWN_ISSUER, 19: _UNKNOWN_ISSUER, 20: _UNKNOWN_ISSUER, 21: _UNKNOWN_ISSUER}


def explain_tls(exc: BaseException) -> str | None:
    """Why a TLS handshake failed, in words a user can act on; None if `exc` (or what
    caused it) is no TLS error."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            hint = _VERIFY_HINTS.get(seen.verify_code, "")
            return f"the peer's certificate is not trusted: {seen.verify_message}{hint}"
        if isinstance(seen, ssl.SSLError) and seen.reason:
            return _REASONS.get(seen.reason, f"TLS failed: {seen.reason}")
        seen = seen.__cause__ or seen.__context__
    return None


class _AlertingTLSStream(TLSStream):
    """A TLSStream whose failed handshake sends the pending alert before it gives up."""

    async def _call_sslobject_method(self, func: Any, *args: Any) -> Any:  # type: ignore[override]
        try:
            return await super()._call_sslobject_method(func, *args)
        except ssl.SSLError:
            pending = getattr(self, "_write_bio", None)
            if pending is not None and pending.pending:
                with (
                    anyio.move_on_after(1),
                    contextlib.suppress(OSError, anyio.BrokenResourceError),
                ):
                    await self.transport_stream.send(pending.read())
            raise


class ServerTLSListener(TLSListener):
    """TLS in front of a listener: refused peers get the alert and one log line each."""

    refusals = ThrottledLog(log)

    async def serve(
        self, handler: Callable[[TLSStream], Any], task_group: TaskGroup | None = None
    ) -> None:
        async def handshake(stream: Any) -> None:
            try:
                with anyio.fail_after(self.handshake_timeout):
                    wrapped = await _AlertingTLSStream.wrap(
                        stream, ssl_context=self.ssl_context, standard_compatible=False
                    )
            except BaseException as exc:
                await self.handle_handshake_error(exc, stream)
            else:
                await handler(wrapped)

        await self.listener.serve(handshake, task_group)

    @staticmethod
    async def handle_handshake_error(exc: BaseException, stream: Any) -> None:
        peer = stream.extra(SocketAttribute.remote_address, None)
        await anyio.aclose_forcefully(stream)
        if isinstance(exc, anyio.get_cancelled_exc_class()) or not isinstance(exc, Exception):
            raise exc
        where = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a peer"
        if isinstance(exc, TimeoutError):
            why = "it did not complete the handshake in time"
        elif isinstance(exc, anyio.EndOfStream):
            why = _REASONS["UNEXPECTED_EOF_WHILE_READING"]
        else:
            why = explain_tls(exc) or f"{type(exc).__name__}: {exc}"
        ServerTLSListener.refusals.warning("refused the TLS connection from %s: %s", where, why)


def tls_listener(listener: Any, context: ssl.SSLContext, handshake_timeout: float) -> Any:
    """Serve `listener`'s connections over TLS."""
    return ServerTLSListener(
        listener, context, standard_compatible=False, handshake_timeout=handshake_timeout
    )
