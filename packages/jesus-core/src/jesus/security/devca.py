"""A development CA: make one and issue service certificates from it, so that TLS, mutual
TLS and sealing run on a fresh machine in a minute (`jesus ca init`, `jesus ca issue`).

Certificates are ECDSA P-256 (every TLS stack takes them), name the service in their common
name and in a DNS name, and are valid for this machine (localhost, 127.0.0.1, ::1, its host
name) and any `hosts` given. For production, use your organisation's CA the same way: jesus
needs nothing from these files that another CA would not give.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from jesus.errors import ConfigurationError
from jesus.security.credentials import Credentials

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")
CA_CERT = "ca.pem"
CA_KEY = "ca.key"


@dataclass(frozen=True)
class Issued:
    certificate: Path
    key: Path


def create_ca(
    directory: str | os.PathLike[str], name: str = "jesus development CA", days: int = 3650
) -> Issued:
    """Create `ca.pem` and `ca.key` in `directory`; refuses to overwrite a CA there."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / CA_CERT, folder / CA_KEY
    if cert_path.exists() or key_path.exists():
        raise ConfigurationError(f"{folder} already holds a CA ({CA_CERT}, {CA_KEY})")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path, key_path)


def issue(
    directory: str | os.PathLike[str],
    name: str,
    hosts: tuple[str, ...] = (),
    days: int = 365,
    not_before: datetime.datetime | None = None,
) -> Issued:
    """Issue `NAME.pem` and `NAME.key` in `directory` from the CA there: a certificate for
    service (or client) `name`, good for servers and clients alike."""
    if not _NAME.match(name):
        raise ConfigurationError(f"{name!r} is not a service name (letters, digits, '_', '-')")
    folder = Path(directory)
    try:
        ca_cert = x509.load_pem_x509_certificate((folder / CA_CERT).read_bytes())
        ca_key = serialization.load_pem_private_key((folder / CA_KEY).read_bytes(), None)
    except FileNotFoundError:
        raise ConfigurationError(f"no CA in {folder}: create one with `jesus ca init`") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"{folder / CA_KEY} is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or _now() - datetime.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_names(name, hosts)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return Issued(cert_path, key_path)


def credentials(directory: str | os.PathLike[str], name: str) -> Credentials:
    """The Credentials of `name`'s certificate in `directory`, trusting the CA there."""
    folder = Path(directory)
    return Credentials.load(folder / CA_CERT, folder / f"{name}.pem", folder / f"{name}.key")


def _names(name: str, hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    seen: list[x509.GeneralName] = []
    for host in (name, "localhost", socket.gethostname(), "127.0.0.1", "::1", *hosts):
        try:
            entry: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
        except ValueError:
            entry = x509.DNSName(host)
        if entry not in seen:
            seen.append(entry)
    return seen


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
