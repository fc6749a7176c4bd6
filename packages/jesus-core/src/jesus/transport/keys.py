"""Keys for transports that secure themselves with a handshake of their own (zeromq's CURVE):
a Curve25519 key pair per node, vouched for by the certificate that signs its seals and
checked against the same trust anchors. A transport that takes them says so with a class
attribute `keyed = True`; the core then hands it `TransportOptions.keys` whenever the node
or client has sealing credentials (a certificate, its key and a CA).

The key pair is derived from the certificate's private key (HKDF-SHA256), not taken from the
X25519 keys that seal: those rotate every `seal_key_lifetime` while a bound socket keeps its
key, a node with nothing sealed has none, and one key serving two protocols is avoided. The
same certificate key gives the same pair, on servers and clients alike.

A key is worth what vouches for it: each end sends a proof, its certificate chain and a
signature over `CONTEXT || role || its public key || the peer's public key` (the client's
names the server's key, so that a server cannot replay it to another)."""

from __future__ import annotations

import base64
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from jesus.errors import ConfigurationError
from jesus.sealing.identity import (
    Signer,
    Trust,
    UntrustedCertificate,
    check_signature,
    signer_and_trust,
)
from jesus.sealing.keys import b64, dns_names
from jesus.security.credentials import Credentials

CONTEXT = b"jesus-transport-key-v1\x00"
_DERIVE_INFO = b"jesus-transport-key-v1 curve25519\x00"
SERVER, CLIENT = b"server", b"client"
KEY_SIZE = 32


class KeyRefused(ValueError):
    """A peer's proof that does not hold: untrusted certificate, or not over these keys."""


@dataclass(frozen=True, slots=True)
class Vouched:
    """Who a checked proof names: the certificate's common name, and its DNS names."""

    name: str
    names: frozenset[str]


class TransportKeys:
    """This end's key pair and proofs, and the check of a peer's. Files are read at first
    use: a client that never meets a keyed endpoint never loads them."""

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    @classmethod
    def of(cls, credentials: Credentials | None) -> TransportKeys | None:
        """The keys of `credentials`; None unless they hold a certificate, its key and a CA
        (a keyed transport both proves itself and checks its peers)."""
        if credentials is None or None in (
            credentials.ca,
            credentials.certificate,
            credentials.key,
        ):
            return None
        return cls(credentials)

    @functools.cached_property
    def _identity(self) -> tuple[Signer, Trust]:
        return signer_and_trust(self.credentials, "a keyed transport (zmq CURVE)")

    @functools.cached_property
    def secret(self) -> bytes:
        """The raw Curve25519 secret key (32 bytes)."""
        assert self.credentials.key is not None
        loaded = serialization.load_pem_private_key(Path(self.credentials.key).read_bytes(), None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey):
            size = (loaded.curve.key_size + 7) // 8
            material = loaded.private_numbers().private_value.to_bytes(size, "big")
        elif isinstance(loaded, ed25519.Ed25519PrivateKey):
            material = loaded.private_bytes_raw()
        else:
            raise ConfigurationError(f"{self.credentials.key}: an EC or Ed25519 key is needed")
        hkdf = HKDF(hashes.SHA256(), KEY_SIZE, salt=None, info=_DERIVE_INFO)
        private = X25519PrivateKey.from_private_bytes(hkdf.derive(material))
        return private.private_bytes_raw()

    @functools.cached_property
    def public(self) -> bytes:
        """The raw Curve25519 public key (32 bytes)."""
        return X25519PrivateKey.from_private_bytes(self.secret).public_key().public_bytes_raw()

    def vouch(self, role: bytes, peer: bytes = b"") -> str:
        """A proof (text) that `self.public` is this certificate's, for a peer whose key is
        `peer` (a server's proof names no peer: it is the same for every client)."""
        signer, _ = self._identity
        signature = signer.sign(CONTEXT + role + self.public + peer)
        return json.dumps(
            {"certificates": [b64(c) for c in signer.chain], "signature": b64(signature)},
            separators=(",", ":"),
        )

    def check(
        self, proof: str | bytes | None, role: bytes, key: bytes, peer: bytes = b""
    ) -> Vouched:
        """Who `proof` proves holds `key` (in `role`, facing `peer`); raises KeyRefused."""
        if not proof:
            raise KeyRefused("the peer sent no proof of its key (no certificate)")
        _, trust = self._identity
        try:
            parsed = json.loads(proof)
            chain = tuple(base64.b64decode(c, validate=True) for c in parsed["certificates"])
            signature = base64.b64decode(parsed["signature"], validate=True)
        except (ValueError, KeyError, TypeError):
            raise KeyRefused("the proof of the peer's key does not read") from None
        if not chain:
            raise KeyRefused("the proof of the peer's key names no certificate")
        try:
            name, leaf = trust.verify(chain)
            check_signature(leaf, signature, CONTEXT + role + key + peer)
        except UntrustedCertificate as exc:
            raise KeyRefused(str(exc)) from None
        return Vouched(name, frozenset([name, *dns_names(leaf)]))
