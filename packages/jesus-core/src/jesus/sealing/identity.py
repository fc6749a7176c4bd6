"""Certificates for sealing: a party signs with its certificate's key, and a peer's chain is
checked against the trust anchors configured here (never against what the registry says)."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID

from jesus.errors import ConfigurationError
from jesus.security.credentials import Credentials


class UntrustedCertificate(ValueError):
    """A chain that does not lead to a trust anchor, has expired, or signs nothing valid."""


class Trust:
    """The CA certificates a party trusts; verified chains are remembered by their bytes."""

    def __init__(self, ca_file: Path) -> None:
        anchors = x509.load_pem_x509_certificates(Path(ca_file).read_bytes())
        self._store = verification.Store(anchors)
        self._known: dict[tuple[bytes, ...], tuple[str, x509.Certificate, float]] = {}

    def verify(self, chain: tuple[bytes, ...]) -> tuple[str, x509.Certificate]:
        """The common name and the leaf of a DER chain (leaf first) that leads to a trust
        anchor and is valid now; raises UntrustedCertificate."""
        now = datetime.datetime.now(datetime.UTC)
        known = self._known.get(chain)
        if known is not None and now.timestamp() < known[2]:
            return known[0], known[1]
        try:
            certificates = [x509.load_der_x509_certificate(c) for c in chain]
            # The chain, its validity and the CA rules of the Web PKI; not the leaf's key
            # usages, which are TLS's (a server certificate may say serverAuth only).
            verifier = (
                verification.PolicyBuilder()
                .store(self._store)
                .time(now)
                .extension_policies(
                    ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                    ee_policy=verification.ExtensionPolicy.permit_all(),
                )
            )
            verifier.build_client_verifier().verify(certificates[0], certificates[1:])
        except Exception as exc:  # any certificate that does not parse or verify
            raise UntrustedCertificate(f"certificate not trusted: {exc}") from None
        leaf = certificates[0]
        name = common_name(leaf)
        if name is None:
            raise UntrustedCertificate("the certificate names no subject common name")
        if len(self._known) > 4096:
            self._known.clear()
        self._known[chain] = (name, leaf, leaf.not_valid_after_utc.timestamp())
        return name, leaf


class Signer:
    """Signs with a certificate's private key (ECDSA with SHA-256, or Ed25519)."""

    def __init__(self, certificate: Path, key: Path) -> None:
        chain = x509.load_pem_x509_certificates(Path(certificate).read_bytes())
        self.chain = tuple(c.public_bytes(serialization.Encoding.DER) for c in chain)
        self.name = common_name(chain[0])
        loaded = serialization.load_pem_private_key(Path(key).read_bytes(), None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise ConfigurationError(f"{key}: sealing signs with an EC or Ed25519 key")
        self._key: Any = loaded

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return bytes(self._key.sign(data, ec.ECDSA(hashes.SHA256())))


def check_signature(leaf: x509.Certificate, signature: bytes, data: bytes) -> None:
    """Raises UntrustedCertificate unless `signature` is `leaf`'s key's over `data`."""
    key: Any = leaf.public_key()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise UntrustedCertificate("the certificate's key cannot sign for sealing")
    except InvalidSignature:
        raise UntrustedCertificate("the signature does not match the certificate") from None


def common_name(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def signer_and_trust(credentials: Credentials, who: str) -> tuple[Signer, Trust]:
    if credentials.certificate is None or credentials.key is None or credentials.ca is None:
        raise ConfigurationError(
            f"{who} seals messages: it needs credentials with a CA, a certificate and its key"
        )
    return Signer(credentials.certificate, credentials.key), Trust(credentials.ca)
