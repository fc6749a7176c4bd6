"""A renewed certificate goes into service without a restart, under traffic: new TLS
handshakes show it, new sealing keys are signed by it, and no call fails meanwhile."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.streams.tls import TLSAttribute
from cryptography import x509

import jesus
from jesus.security import devca
from tests.security.conftest import Pki

pytestmark = pytest.mark.anyio


def renewed(pki: Pki, folder: Path, name: str) -> jesus.Credentials:
    """A new certificate and key for `name` from the same CA, in another folder."""
    folder.mkdir()
    for part in (devca.CA_CERT, devca.CA_KEY):
        shutil.copy(pki.folder / part, folder / part)
    devca.issue(folder, name)
    return devca.credentials(folder, name)


def serial(pem_or_der: bytes) -> int:
    if pem_or_der.startswith(b"-----"):
        return x509.load_pem_x509_certificate(pem_or_der).serial_number
    return x509.load_der_x509_certificate(pem_or_der).serial_number


async def served_serial(endpoint: str, creds: jesus.Credentials) -> int:
    """The serial of the certificate a fresh TLS handshake with `endpoint` shows."""
    parts = urlsplit(endpoint)
    assert parts.hostname is not None and parts.port is not None
    stream = await anyio.connect_tcp(
        parts.hostname,
        parts.port,
        ssl_context=creds.client_context(),
        tls_standard_compatible=False,
    )
    async with stream:
        return serial(stream.extra(TLSAttribute.peer_certificate_binary))


async def test_a_renewed_certificate_is_taken_under_traffic(
    registry: str, pki: Pki, tmp_path: Path
) -> None:
    svc = jesus.Service("vault", channel="tcp")

    @svc.method()
    async def hello(data: Any) -> str:
        return "hello"

    @svc.method(channel="udp", seal="encrypt")
    async def secret(data: Any) -> str:
        return "sealed"

    new = renewed(pki, tmp_path / "renewed", "vault")
    assert new.certificate is not None
    failures: list[BaseException] = []
    done = 0
    async with (
        jesus.serve(svc, registry=registry, tls=pki.creds("vault")) as node,
        jesus.Client(registry, tls=pki.creds("billing")) as client,
    ):
        old_serial = await served_serial(node.endpoints["tcp"], pki.creds("billing"))
        assert pki.creds("vault").certificate is not None
        assert old_serial == serial(pki.creds("vault").certificate.read_bytes())

        async def traffic() -> None:
            nonlocal done
            while done < 300:
                try:
                    assert await client.call("vault.hello") == "hello"
                    assert await client.call("vault.secret") == "sealed"
                except Exception as exc:  # every failure is reported below
                    failures.append(exc)
                done += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(traffic)
            while done < 100:
                await anyio.sleep(0.01)
            await node.reload_credentials(new)
        assert failures == []
        assert await served_serial(node.endpoints["tcp"], pki.creds("billing")) == serial(
            new.certificate.read_bytes()
        )
        (record,) = await node.client.resolver.backend.list_instances("vault")
        published = base64.b64decode(record.seal["certificates"][0])
        assert serial(published) == serial(new.certificate.read_bytes())
        async with jesus.Client(registry, tls=pki.creds("billing")) as fresh:
            assert await fresh.call("vault.secret") == "sealed"  # sealed to the new key
