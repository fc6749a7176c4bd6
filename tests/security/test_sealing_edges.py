"""Sealing at its edges: events refused by a sealed listener, a caller's own seal on an
event, unix peers, and certificates a company CA issues for servers only."""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import jesus
from tests.security.conftest import Pki

pytestmark = pytest.mark.anyio


async def test_a_sealed_listener_refusal_reaches_the_emitter_readable(
    registry: str, pki: Pki
) -> None:
    svc = jesus.Service("vault", channel="udp")
    got: list[Any] = []

    @svc.listener("vault.opened", seal="encrypt", allow=["billing"])
    async def opened(data: Any) -> None:
        got.append(data)

    async with jesus.serve(svc, registry=registry, sealing=pki.creds("vault")):
        async with jesus.Client(registry, sealing=pki.creds("stranger")) as stranger:
            with pytest.raises(jesus.EventNotDelivered) as refused:
                await stranger.emit("vault.opened", {}, mode="ack")
        error = refused.value.failures["vault"]
        assert isinstance(error, jesus.PermissionDenied)
        assert "'stranger' may not call" in error.message  # opened, not "sealed"
        async with jesus.Client(registry, sealing=pki.creds("billing")) as billing:
            assert await billing.emit("vault.opened", {"n": 1}, mode="ack") == ["vault"]
    assert got == [{"n": 1}]


async def test_an_emitter_may_seal_an_event_itself(registry: str, pki: Pki) -> None:
    """`seal=` on emit seals it whatever the listener's record says; a listener that is not
    sealed refuses it (the two ends disagree), so nothing goes out in clear by mistake."""
    svc = jesus.Service("plain", channel="udp")

    @svc.listener("plain.thing")
    async def thing(data: Any) -> None: ...

    async with (
        jesus.serve(svc, registry=registry),
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        with pytest.raises(jesus.EventNotDelivered) as refused:
            await client.emit("plain.thing", {}, mode="ack", seal="encrypt")
        assert isinstance(refused.value.failures["plain"], jesus.SealRefused)
        assert await client.emit("plain.thing", {}, mode="ack") == ["plain"]


async def test_a_sealed_call_over_unix_keeps_the_peer_credentials(registry: str, pki: Pki) -> None:
    svc = jesus.Service("vault", channel="unix")

    @svc.method(seal="sign")
    async def whoami(data: Any) -> dict[str, Any]:
        caller = jesus.current_caller()
        assert caller is not None
        return {"name": caller.name, "proof": caller.proof, "uid": caller.uid}

    async with (
        jesus.serve(svc, registry=registry, sealing=pki.creds("vault")),
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        seen = await client.call("vault.whoami")
    assert seen == {"name": "billing", "proof": "seal", "uid": os.getuid()}


def server_only_certificate(pki: Pki, folder: Path, name: str) -> jesus.Credentials:
    """A certificate for `name` whose key usage says serverAuth only, as many CAs issue."""
    ca = x509.load_pem_x509_certificate((pki.folder / "ca.pem").read_bytes())
    ca_key: Any = serialization.load_pem_private_key((pki.folder / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return jesus.Credentials.load(
        pki.folder / "ca.pem", folder / f"{name}.pem", folder / f"{name}.key"
    )


async def test_a_server_only_certificate_can_publish_sealing_keys(
    registry: str, pki: Pki, tmp_path: Path
) -> None:
    svc = jesus.Service("vault", channel="udp")

    @svc.method(seal="encrypt")
    async def ping(data: Any) -> str:
        return "pong"

    creds = server_only_certificate(pki, tmp_path, "vault")
    async with (
        jesus.serve(svc, registry=registry, sealing=creds),
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        assert await client.call("vault.ping") == "pong"


async def test_a_sealed_request_is_bounded_at_both_ends(
    registry: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server opens a seal on its event loop before it knows the seal is good, so it
    opens no more than MAX_SEALED bytes; the client says so before sending."""
    from jesus.runtime import client as client_module
    from jesus.sealing.envelope import MAX_SEALED

    svc = jesus.Service("vault", channel="tcp")
    ran: list[int] = []

    @svc.method(seal="encrypt")
    async def store(data: str) -> int:
        ran.append(len(data))
        return len(data)

    async with (
        jesus.serve(svc, registry=registry, sealing=pki.creds("vault")),
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        fits = "x" * (MAX_SEALED - 2048)
        assert await client.call("vault.store", fits) == len(fits)
        too_big = "x" * (MAX_SEALED + 1)
        with pytest.raises(jesus.TooLarge) as local:
            await client.call("vault.store", too_big)
        assert not local.value.remote
        monkeypatch.setattr(client_module, "MAX_SEALED", 10 * MAX_SEALED)
        with pytest.raises(jesus.TooLarge, match="carries at most") as remote:
            await client.call("vault.store", too_big)
        assert remote.value.remote
    assert ran == [len(fits)]


async def test_a_sealed_stream_cut_short_on_the_way_is_noticed(registry: str, pki: Pki) -> None:
    """A relay may drop a stream's last items and forge its (unsealed) END: the sealed end
    the server sends before END is missing, and the caller says so."""
    import msgpack

    from jesus.messages import Meta, ResponseMode
    from jesus.sealing.seal import Opener, Sealer

    opener, sealer = Opener(pki.creds("vault")), Sealer(pki.creds("billing"))
    key = sealer.recipient("vault", "one", opener.ring.published("vault"))
    meta = Meta(mode=ResponseMode.STREAM)
    blob, caller_side = sealer.seal_request(key, "encrypt", "msgpack", b"\x03", "vault.x", meta)
    *_, server_side = opener.open_request(blob, "vault.x", meta, "encrypt")
    items = [Opener.seal_answer(server_side, msgpack.packb(i), i) for i in range(3)]
    end = Opener.seal_end(server_side)
    client = jesus.Client(registry)
    channel = client._channel("tcp+msgpack")

    async def read(values: list[bytes]) -> list[Any]:
        async def arriving() -> Any:
            for value in values:
                yield value

        return [x async for x in client._opened_items(arriving(), caller_side, channel)]

    assert await read([*items, end]) == [0, 1, 2]
    with pytest.raises(jesus.SealRefused, match="cut short"):
        await read(items[:2])
    with pytest.raises(jesus.SealRefused, match="after the sealed end"):
        await read([items[0], end, items[1]])
    with pytest.raises(jesus.SealRefused):
        await read([items[1], items[0], items[2], end])  # reordered


async def test_a_seal_that_is_not_sign_or_encrypt_is_refused_everywhere(registry: str) -> None:
    """One rule (jesus.sealing.envelope.strength) for a declaration, a record and a call."""
    from jesus.registry.base import MethodRecord

    svc = jesus.Service("vault")

    async def handler(data: Any) -> None: ...

    with pytest.raises(jesus.ConfigurationError, match=r"vault\.handler: seal must be"):
        svc.method(seal="encrypted")(handler)
    with pytest.raises(jesus.ConfigurationError, match="seal must be"):
        svc.listener("vault.opened", seal="yes")(handler)
    with pytest.raises(ValueError, match="field 'seal'"):
        MethodRecord.from_json({"channel": "tcp", "seal": "none"})

    @svc.method()
    async def ping(data: Any) -> str:
        return "pong"

    async with jesus.serve(svc, registry=registry), jesus.Client(registry) as client:
        with pytest.raises(jesus.ConfigurationError, match="seal must be"):
            await client.call("vault.ping", seal="strong")
        with pytest.raises(jesus.ConfigurationError, match="seal must be"):
            await client.emit("vault.x", seal="strong")
        assert await client.call("vault.ping") == "pong"
