"""Data keys. A caller makes one per recipient key, wraps it with HPKE to that key and signs
the grant with its certificate; the recipient unwraps it once and keeps it, with the replay
window of the messages sealed under it, for as long as they can arrive."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from jesus.sealing import envelope
from jesus.sealing.identity import Signer, Trust, UntrustedCertificate, check_signature
from jesus.sealing.keys import KeyRing, RecipientKey
from jesus.sealing.replay import ReplayWindow

# RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
# A data key is replaced after this long, or after this many messages.
GRANT_LIFETIME = 600.0
MAX_COUNTER = 1 << 40


class GrantRefused(ValueError):
    """A grant this end cannot use: for a key it does not hold, forged, or expired."""


@dataclass
class OutgoingGrant:
    grant_id: bytes
    raw: bytes
    aead: ChaCha20Poly1305
    renew_at: float
    counter: int = 0

    def next_counter(self) -> int:
        self.counter += 1
        return self.counter


class GrantBook:
    """The caller's data keys, one per recipient key."""

    def __init__(self, signer: Signer, lifetime: float = GRANT_LIFETIME) -> None:
        self.signer = signer
        self.lifetime = lifetime
        self._grants: dict[bytes, OutgoingGrant] = {}

    def grant_for(self, recipient: RecipientKey) -> OutgoingGrant:
        grant = self._grants.get(recipient.key_id)
        if grant is None or time.time() >= grant.renew_at or grant.counter >= MAX_COUNTER:
            grant = self._grants[recipient.key_id] = self._make(recipient)
        return grant

    def _make(self, recipient: RecipientKey) -> OutgoingGrant:
        data_key = ChaCha20Poly1305.generate_key()
        grant_id = os.urandom(16)
        wrapped = SUITE.encrypt(
            data_key, recipient.public, info=envelope.HPKE_INFO + recipient.key_id
        )
        now = time.time()
        # Never past the recipient key's own end: a grant for a retired key would fail.
        expires = int(min(now + 2 * self.lifetime, recipient.not_after))
        body = envelope.grant_body(
            grant_id, recipient.key_id, expires, wrapped, list(self.signer.chain)
        )
        raw = envelope.pack_grant(body, self.signer.sign(envelope.GRANT_CONTEXT + body))
        renew = min(now + self.lifetime, expires - 1)
        return OutgoingGrant(grant_id, raw, ChaCha20Poly1305(data_key), renew)


@dataclass
class IncomingGrant:
    grant_id: bytes
    raw: bytes
    aead: ChaCha20Poly1305
    caller: str
    expires: int
    window: ReplayWindow = field(default_factory=ReplayWindow)
    newest_ms: int = 0  # the latest timestamp accepted under it


class GrantCache:
    """The grants a recipient accepted, at most `capacity`. One is forgotten only once every
    message sealed under it is too old to be taken (its replay window is then not needed)."""

    def __init__(self, ring: KeyRing, trust: Trust, capacity: int, window_s: float) -> None:
        self.ring = ring
        self.trust = trust
        self.capacity = capacity
        self.window_ms = int(window_s * 1000)
        # By the grant's bytes: a grant is signed, so equal bytes are the grant once checked.
        self._grants: dict[bytes, IncomingGrant] = {}
        self._by_id: dict[bytes, IncomingGrant] = {}

    def open(self, raw: bytes, now_ms: int) -> IncomingGrant:
        """The accepted grant `raw`; raises GrantRefused or envelope.SealFormatError."""
        known = self._grants.get(raw)  # the same bytes: accepted before, nothing to check
        if known is not None:
            return known
        grant = envelope.unpack_grant(raw)
        known = self._by_id.get(grant.grant_id)
        if known is not None:
            # Other bytes under a known id: only the signature's encoding may differ (an
            # ECDSA signature has two), and the grant keeps its one replay window.
            if envelope.unpack_grant(known.raw).signed != grant.signed:
                raise GrantRefused("a different grant under a known grant id")
            self._check_signature(grant)
            return known
        if grant.expires * 1000 + self.window_ms < now_ms:
            raise GrantRefused("the grant has expired")
        key = self.ring.find(grant.key_id)
        if key is None:
            raise GrantRefused("sealed to a key this service does not hold (retired?)")
        name = self._check_signature(grant)
        try:
            data_key = SUITE.decrypt(
                grant.wrapped, key.private, info=envelope.HPKE_INFO + key.key_id
            )
        except Exception:  # pyca raises InvalidTag or ValueError
            raise GrantRefused("the data key does not unwrap with this service's key") from None
        if len(data_key) != 32:
            raise GrantRefused("the data key is not 32 bytes")
        self._make_room(now_ms)
        accepted = IncomingGrant(
            grant.grant_id, raw, ChaCha20Poly1305(data_key), name, grant.expires
        )
        self._grants[raw] = accepted
        self._by_id[grant.grant_id] = accepted
        return accepted

    def _check_signature(self, grant: envelope.Grant) -> str:
        """The caller's name, once its chain and its signature of the grant hold."""
        try:
            name, leaf = self.trust.verify(grant.certificates)
            check_signature(leaf, grant.signature, envelope.GRANT_CONTEXT + grant.signed)
        except UntrustedCertificate as exc:
            raise GrantRefused(f"the caller's {exc}") from None
        return name

    def _make_room(self, now_ms: int) -> None:
        if len(self._grants) < self.capacity:
            return
        stale = now_ms - self.window_ms
        for raw, grant in list(self._grants.items()):  # oldest first
            if grant.newest_ms < stale:
                del self._grants[raw]
                del self._by_id[grant.grant_id]
                if len(self._grants) < self.capacity:
                    return
        raise GrantRefused(
            f"{self.capacity} sealing grants are in use (Limits.max_seal_grants); retry later"
        )

    def __len__(self) -> int:
        return len(self._grants)
