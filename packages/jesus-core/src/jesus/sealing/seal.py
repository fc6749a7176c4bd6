"""The two ends of a sealed call. The caller's `Sealer` seals a request to the instance it
sends it to and opens the answers; the recipient's `Opener` checks and opens the request,
names the caller its certificate proves, and seals the answers so only the caller reads
them. Meta stays readable (a relay routes by it) but its fields that matter are bound."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from jesus.errors import CallError, ConfigurationError, SealRefused
from jesus.messages import Meta
from jesus.sealing import envelope
from jesus.sealing.grants import GrantBook, GrantCache, GrantRefused
from jesus.sealing.identity import Trust, signer_and_trust
from jesus.sealing.keys import KeyRing, RecipientKey, check_published
from jesus.security.credentials import Credentials


@dataclass(slots=True)
class SealedCall:
    """What both ends keep of one sealed call, to seal or open its answers."""

    aead: ChaCha20Poly1305
    grant_id: bytes
    counter: int
    protection: int
    codec: int


def to_wire(codec: str, blob: bytes) -> Any:
    """A sealed blob as a value of `codec`: bytes, or base64 text where the codec has no
    bytes (json)."""
    return base64.b64encode(blob).decode() if codec == "json" else blob


def from_wire(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            pass
    raise SealRefused("the sealed value is neither bytes nor base64 text")


def _seal(aead: ChaCha20Poly1305, protection: int, nonce: bytes, aad: bytes, data: bytes) -> bytes:
    if protection == envelope.ENCRYPT:
        return aead.encrypt(nonce, data, aad)
    return data + aead.encrypt(nonce, b"", aad + data)


def _open(aead: ChaCha20Poly1305, protection: int, nonce: bytes, aad: bytes, body: bytes) -> bytes:
    try:
        if protection == envelope.ENCRYPT:
            return aead.decrypt(nonce, body, aad)
        data, tag = body[: -envelope.TAG], body[-envelope.TAG :]
        aead.decrypt(nonce, tag, aad + data)
        return data
    except InvalidTag:
        raise SealRefused("the seal does not verify: the message was altered") from None


def _aad(head: bytes, grant_id: bytes, counter: int, ts: int, method: str, meta: Meta) -> bytes:
    return envelope.request_aad(
        head,
        grant_id,
        counter,
        ts,
        method,
        meta.corrid,
        meta.mode.wire,
        meta.userid,
        meta.sender,
        meta.event,
    )


def seal_error(call: SealedCall, error: CallError) -> CallError:
    """`error` as a sealed call answers it: its message and details move into a seal (only
    the caller reads them, and knows they came from the recipient); the code stays readable.
    A signed call keeps its message readable too."""
    text = json.dumps({"message": error.message, "details": error.details}, default=repr)
    blob = _seal_at(call, text.encode(), envelope.ERROR_INDEX)
    if call.protection == envelope.ENCRYPT:
        error.message = "sealed"
    error.details = {"sealed": base64.b64encode(blob).decode()}
    return error


def open_error(call: SealedCall, error: CallError) -> CallError:
    """The error a sealed call got, opened. An error with no seal came from before the
    recipient opened the request (a transport, a refused seal): it is returned as it is."""
    details = error.details
    if not (isinstance(details, dict) and set(details) == {"sealed"}):
        return error
    text = Sealer.open_answer(call, details["sealed"], envelope.ERROR_INDEX)
    try:
        opened = json.loads(text)
        error.message, error.details = str(opened["message"]), opened.get("details")
    except (ValueError, KeyError, TypeError):
        raise SealRefused("the sealed error does not read", corrid=error.corrid) from None
    error.args = (error.message,)
    return error


class Sealer:
    """The caller's end: needs a certificate (it signs the grants) and trust anchors (it
    checks the recipients' published keys)."""

    def __init__(self, credentials: Credentials) -> None:
        signer, self.trust = signer_and_trust(credentials, "a client that")
        self.book = GrantBook(signer)
        self._recipients: dict[tuple[str, str], tuple[Any, RecipientKey]] = {}

    def recipient(self, service: str, instance_id: str, seal: Any) -> RecipientKey:
        """The checked key of one instance, from its record's `seal` field."""
        cached = self._recipients.get((service, instance_id))
        if (
            cached is not None
            and (cached[0] is seal or cached[0] == seal)
            and cached[1].not_after > time.time()
        ):
            return cached[1]
        try:
            key = check_published(seal, service, self.trust)
        except ValueError as exc:
            raise SealRefused(f"cannot seal to {service}: {exc}") from None
        self._recipients[(service, instance_id)] = (seal, key)
        return key

    def seal_request(
        self,
        recipient: RecipientKey,
        protection: str,
        codec: str,
        plaintext: bytes,
        method: str,
        meta: Meta,
    ) -> tuple[bytes, SealedCall]:
        grant = self.book.grant_for(recipient)
        counter = grant.next_counter()
        ts = int(time.time() * 1000)
        prot, codec_id = envelope.PROTECTIONS[protection], envelope.CODECS[codec]
        head = bytes((envelope.VERSION, prot, codec_id))
        aad = _aad(head, grant.grant_id, counter, ts, method, meta)
        body = _seal(grant.aead, prot, envelope.request_nonce(counter), aad, plaintext)
        blob = envelope.pack_request(prot, codec_id, grant.raw, counter, ts, body)
        return blob, SealedCall(grant.aead, grant.grant_id, counter, prot, codec_id)

    @staticmethod
    def is_end(call: SealedCall, value: Any) -> bool:
        """Whether a stream item is the sealed end of `call`'s stream."""
        try:
            return Sealer.open_answer(call, value, envelope.END_INDEX) == b""
        except SealRefused:
            return False

    @staticmethod
    def open_answer(call: SealedCall, value: Any, index: int = 0) -> bytes:
        """An answer's plaintext; raises SealRefused unless it is this call's, at `index`."""
        try:
            protection, codec, body = envelope.unpack_answer(from_wire(value))
        except envelope.SealFormatError as exc:
            raise SealRefused(f"the answer is not sealed: {exc}") from None
        if (protection, codec) != (call.protection, call.codec):
            raise SealRefused("the answer is not sealed the way its request was")
        head = bytes((envelope.VERSION, protection, codec))
        aad = envelope.answer_aad(head, call.grant_id, call.counter, index)
        return _open(call.aead, protection, envelope.answer_nonce(call.counter, index), aad, body)


class Opener:
    """The recipient's end: its sealing keys, the grants it accepted, the replay windows."""

    def __init__(
        self,
        credentials: Credentials,
        max_grants: int = 10_000,
        window: float = 60.0,
        key_lifetime: float = 3600.0,
    ) -> None:
        signer, trust = signer_and_trust(credentials, "a service with sealed methods")
        if signer.name is None:
            raise ConfigurationError("the service's certificate names no common name")
        self.ring = KeyRing(signer, key_lifetime)
        self.trust: Trust = trust
        self.window_ms = int(window * 1000)
        self.grants = GrantCache(self.ring, trust, max_grants, window)

    def reload(self, credentials: Credentials) -> None:
        """Sign new keys with another certificate, and check callers against its CA file
        (grants already accepted stay valid until they expire). Rotate the keys after."""
        signer, trust = signer_and_trust(credentials, "a service with sealed methods")
        self.ring.signer = signer
        self.trust = self.grants.trust = trust

    def open_request(
        self, value: Any, method: str, meta: Meta, required: str
    ) -> tuple[bytes, str, str, SealedCall]:
        """(plaintext, its codec, the caller's proven name, the call) of a sealed request;
        raises SealRefused saying why it cannot be taken."""
        raw = from_wire(value)
        try:
            sealed = envelope.unpack_request(raw)
        except envelope.SealFormatError as exc:
            raise SealRefused(f"not a sealed request: {exc}") from None
        if sealed.protection < envelope.PROTECTIONS[required]:
            raise SealRefused(f"{method} must be sealed {required!r}, it came signed only")
        now_ms = int(time.time() * 1000)
        if abs(now_ms - sealed.timestamp_ms) > self.window_ms:
            raise SealRefused(
                "the request was sealed too long ago (a replay?) or the clocks disagree "
                f"by more than {self.window_ms // 1000}s"
            )
        try:
            grant = self.grants.open(sealed.grant, now_ms)
        except (GrantRefused, envelope.SealFormatError) as exc:
            raise SealRefused(str(exc)) from None
        why = grant.window.check(sealed.counter)
        if why is not None:
            raise SealRefused(f"refused: {why}")
        grant_id, head = grant.grant_id, raw[:3]
        aad = _aad(head, grant_id, sealed.counter, sealed.timestamp_ms, method, meta)
        nonce = envelope.request_nonce(sealed.counter)
        plaintext = _open(grant.aead, sealed.protection, nonce, aad, sealed.body)
        grant.window.accept(sealed.counter)
        grant.newest_ms = max(grant.newest_ms, sealed.timestamp_ms)
        call = SealedCall(grant.aead, grant_id, sealed.counter, sealed.protection, sealed.codec)
        return plaintext, envelope.CODEC_NAMES[sealed.codec], grant.caller, call

    @staticmethod
    def seal_answer(call: SealedCall, plaintext: bytes, index: int = 0) -> bytes:
        """The answer at `index` (0 for a result, 0, 1, 2... for stream items)."""
        if index >= envelope.MAX_ITEMS:  # the last indexes are the end's and the error's
            raise SealRefused(f"a sealed call answers at most {envelope.MAX_ITEMS} items")
        return _seal_at(call, plaintext, index)

    @staticmethod
    def seal_end(call: SealedCall) -> bytes:
        """The last item of a sealed stream, before END: proof that nothing was cut off."""
        return _seal_at(call, b"", envelope.END_INDEX)


def _seal_at(call: SealedCall, plaintext: bytes, index: int) -> bytes:
    head = bytes((envelope.VERSION, call.protection, call.codec))
    aad = envelope.answer_aad(head, call.grant_id, call.counter, index)
    nonce = envelope.answer_nonce(call.counter, index)
    return envelope.pack_answer(
        call.protection, call.codec, _seal(call.aead, call.protection, nonce, aad, plaintext)
    )
