"""What a service or client proves itself with and what it trusts: a certificate chain and
its private key, and the CA certificates (trust anchors) that peers' certificates must chain
to. One object gives the TLS contexts of both ends; the seal uses the same files."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from jesus.errors import ConfigurationError

ENV = {"ca": "JESUS_CA", "certificate": "JESUS_CERT", "key": "JESUS_KEY"}


@dataclass(frozen=True)
class Credentials:
    """`certificate` (PEM, leaf first) and `key` (PEM) prove who this end is; `ca` (PEM,
    one or more CA certificates) is what it trusts. A server needs the certificate and key,
    and with `ca` it requires client certificates (mutual TLS); a client needs `ca` to trust
    a private CA, and the certificate and key to prove itself to a mutual-TLS server."""

    ca: Path | None = None
    certificate: Path | None = None
    key: Path | None = None

    def __post_init__(self) -> None:
        if (self.certificate is None) != (self.key is None):
            raise ConfigurationError("a certificate needs its key, and a key its certificate")
        for label, path in (("CA", self.ca), ("certificate", self.certificate), ("key", self.key)):
            if path is not None and not Path(path).is_file():
                raise ConfigurationError(f"the {label} file {path} does not exist")

    @classmethod
    def load(
        cls,
        ca: str | os.PathLike[str] | None = None,
        certificate: str | os.PathLike[str] | None = None,
        key: str | os.PathLike[str] | None = None,
    ) -> Credentials:
        return cls(*(None if p is None else Path(p) for p in (ca, certificate, key)))

    @classmethod
    def from_env(cls) -> Credentials | None:
        """From $JESUS_CA, $JESUS_CERT and $JESUS_KEY; None when none is set."""
        paths = {field: os.environ.get(var) or None for field, var in ENV.items()}
        if not any(paths.values()):
            return None
        return cls.load(paths["ca"], paths["certificate"], paths["key"])

    @property
    def name(self) -> str | None:
        """The identity the certificate proves: its subject common name."""
        if self.certificate is None:
            return None
        from cryptography import x509  # costs 80 ms at import: only when asked
        from cryptography.x509.oid import NameOID

        leaf = x509.load_pem_x509_certificate(Path(self.certificate).read_bytes())
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None

    def server_context(self) -> ssl.SSLContext:
        """TLS for a listener: this certificate; client certificates required when `ca`."""
        if self.certificate is None or self.key is None:
            raise ConfigurationError("a TLS server needs a certificate and its key")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._load_chain(context)
        if self.ca is not None:
            context.load_verify_locations(cafile=str(self.ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self) -> ssl.SSLContext:
        """TLS for outgoing calls: trust `ca` (else the system's), show this certificate."""
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if self.ca is None else str(self.ca)
        )
        if self.certificate is not None:
            self._load_chain(context)
        return context

    def reload_into(self, server: ssl.SSLContext | None, client: ssl.SSLContext | None) -> None:
        """Put these credentials into contexts already in use: their next handshakes take
        them, connections already open keep theirs. CA certificates are added to what the
        contexts trust (OpenSSL cannot remove one); during a change of CA, trust both."""
        for context in (server, client):
            if context is None:
                continue
            if self.certificate is not None:
                self._load_chain(context)
            if self.ca is not None:
                context.load_verify_locations(cafile=str(self.ca))

    def _load_chain(self, context: ssl.SSLContext) -> None:
        try:
            context.load_cert_chain(str(self.certificate), str(self.key))
        except (ssl.SSLError, OSError) as exc:
            raise ConfigurationError(
                f"cannot use certificate {self.certificate} with key {self.key}: {exc}"
            ) from None
