"""A recipient's sealing keys: X25519 key pairs for HPKE, each published in the registry
record with a signature by the service's certificate, rotated without downtime (the key
before the current one is still accepted for `grace` seconds)."""

from __future__ import annotations

import base64
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from jesus.sealing.identity import Signer, Trust, UntrustedCertificate, check_signature

KEY_CONTEXT = b"jesus-seal-v1 key\x00"
_EXPIRY = struct.Struct(">Q")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected a base64 string")
    return base64.b64decode(text, validate=True)


def key_statement(service: str, key_id: bytes, public: bytes, not_after: int) -> bytes:
    """What the certificate's key signs to publish a sealing key for `service`."""
    name = service.encode()
    return KEY_CONTEXT + bytes([len(name)]) + name + key_id + public + _EXPIRY.pack(not_after)


@dataclass
class SealingKey:
    key_id: bytes
    private: X25519PrivateKey
    public: bytes
    not_after: int  # callers stop sealing to it then (UNIX s)
    retire_at: float  # this end stops opening with it then


class KeyRing:
    """The sealing keys of one node. `lifetime`: how long a key is the current one."""

    def __init__(self, signer: Signer, lifetime: float = 3600.0, grace: float = 600.0) -> None:
        self.signer = signer
        self.lifetime = lifetime
        self.grace = grace
        self.keys: dict[bytes, SealingKey] = {}
        self.current = self._make()

    def _make(self) -> SealingKey:
        private = X25519PrivateKey.generate()
        public = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        not_after = int(time.time() + self.lifetime + self.grace)
        key = SealingKey(os.urandom(8), private, public, not_after, not_after + self.grace)
        self.keys[key.key_id] = key
        return key

    def rotate(self) -> SealingKey:
        """A new current key; the previous one opens what callers still seal to it for
        `grace` seconds (they learn of the new key when their registry cache refreshes)."""
        previous = self.current
        previous.retire_at = min(previous.retire_at, time.time() + self.grace)
        self.current = self._make()
        now = time.time()
        self.keys = {k: v for k, v in self.keys.items() if v.retire_at > now}
        return self.current

    def due(self) -> bool:
        return time.time() >= self.current.not_after - self.grace

    def find(self, key_id: bytes) -> SealingKey | None:
        key = self.keys.get(key_id)
        return key if key is not None and time.time() < key.retire_at else None

    def published(self, service: str) -> dict[str, Any]:
        """The `seal` field of `service`'s registry record: the certificate chain and each
        key still accepted, newest first, signed for this service."""
        now = time.time()
        live = [k for k in reversed(self.keys.values()) if now < k.retire_at]  # newest first
        return {
            "certificates": [b64(c) for c in self.signer.chain],
            "keys": [
                {
                    "id": b64(k.key_id),
                    "x25519": b64(k.public),
                    "not_after": k.not_after,
                    "signature": b64(
                        self.signer.sign(key_statement(service, k.key_id, k.public, k.not_after))
                    ),
                }
                for k in live
            ],
        }


@dataclass(frozen=True)
class RecipientKey:
    service: str
    key_id: bytes
    public: X25519PublicKey
    not_after: int


def check_published(seal: Any, service: str, trust: Trust) -> RecipientKey:
    """The key to seal to from a record's `seal` field, checked: its certificate leads to
    this end's trust anchors and names `service`, and it signed the key. Raises ValueError
    (UntrustedCertificate among them) naming what is wrong."""
    if not isinstance(seal, dict) or not isinstance(seal.get("keys"), list):
        raise ValueError("the record publishes no sealing key")
    chain = tuple(unb64(c) for c in seal.get("certificates") or [])
    if not chain:
        raise ValueError("the record publishes no certificate")
    name, leaf = trust.verify(chain)
    if service not in {name, *dns_names(leaf)}:
        raise UntrustedCertificate(f"the certificate names {name!r}, not {service!r}")
    now = time.time()
    for entry in seal["keys"]:
        not_after = entry.get("not_after") if isinstance(entry, dict) else None
        if type(not_after) is not int or not_after <= now:
            continue
        key_id, public = unb64(entry.get("id")), unb64(entry.get("x25519"))
        if len(key_id) != 8 or len(public) != 32:
            raise ValueError("a published sealing key is malformed")
        statement = key_statement(service, key_id, public, not_after)
        check_signature(leaf, unb64(entry.get("signature")), statement)
        return RecipientKey(service, key_id, X25519PublicKey.from_public_bytes(public), not_after)
    raise ValueError("every published sealing key has expired")


def dns_names(leaf: x509.Certificate) -> list[str]:
    """The DNS names of a certificate's subjectAltName."""
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(names.value.get_values_for_type(x509.DNSName))
