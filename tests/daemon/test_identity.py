"""Which local process is which: its uid, as the kernel tells the daemon, names the services
it is. It offers only those, served with their certificates, and calls as them, so callees'
`allow` lists see the service proven, not the daemon."""

from __future__ import annotations

import os
from typing import Any

import pytest

import jesus
from jesus_daemon import DaemonClient, provide, run_daemon
from jesus_daemon.identity import Identities
from tests.daemon.test_providers import socket  # noqa: F401  (the fixture)
from tests.security.conftest import Pki, pki  # noqa: F401  (the fixture)

pytestmark = pytest.mark.anyio
ME = os.getuid()


def vault() -> jesus.Service:
    svc = jesus.Service("vault", channel="tcp+msgpack")

    @svc.method(allow=["billing"])
    async def secret(data: Any) -> str:
        meta = jesus.current_call()
        return f"for {meta.sender if meta else None}"

    return svc


def billing() -> jesus.Service:
    svc = jesus.Service("billing", channel="tcp+msgpack")

    @svc.method(request={"type": "integer"}, response={"type": "integer"})
    async def double(n: int) -> int:
        return 2 * n

    return svc


async def test_a_process_calls_as_the_service_its_uid_is(
    registry: str,
    socket: str,  # noqa: F811
    pki: Pki,  # noqa: F811
) -> None:
    async with jesus.serve(vault(), registry=registry, tls=pki.creds("vault")):
        as_billing = Identities({ME: frozenset({"billing"})}, pki.folder)
        async with (
            run_daemon(socket, registry=registry, identities=as_billing, tls=pki.creds("stranger")),
            DaemonClient(socket) as client,
        ):
            # Proven billing by its certificate, though the process said nothing of itself.
            assert await client.call("vault.secret") == "for billing"
        nobody = Identities({ME + 1: frozenset({"billing"})}, pki.folder)
        async with (
            run_daemon(socket, registry=registry, identities=nobody, tls=pki.creds("stranger")),
            DaemonClient(socket, name="billing") as client,  # claiming it proves nothing
        ):
            with pytest.raises(jesus.PermissionDenied):
                await client.call("vault.secret")


async def test_a_process_offers_only_what_it_is_and_with_its_certificate(
    registry: str,
    socket: str,  # noqa: F811
    pki: Pki,  # noqa: F811
) -> None:
    identities = Identities({ME: frozenset({"billing"})}, pki.folder)
    async with (
        run_daemon(socket, registry=registry, identities=identities),
        jesus.Client(registry, tls=pki.creds("stranger")) as client,
    ):
        with pytest.raises(jesus.PermissionDenied, match="may not offer vault"):
            async with provide(vault(), socket=socket):
                pass
        async with provide(billing(), socket=socket):
            (record,) = await client.resolver.backend.list_instances("billing")
            assert "tls=1" in record.endpoints["tcp"]  # served with billing's certificate
            assert await client.call("billing.double", 21) == 42
        async with jesus.Client(registry) as plain, provide(billing(), socket=socket):
            with pytest.raises(jesus.Unavailable):  # no plaintext side door
                await plain.call("billing.double", 1, timeout=2)


def test_identities_are_checked_at_start(pki: Pki) -> None:  # noqa: F811
    with pytest.raises(jesus.ConfigurationError, match="UID=NAME"):
        Identities.parse(["billing"], pki.folder)
    with pytest.raises(jesus.ConfigurationError, match=r"nobody\.pem"):
        Identities.parse([f"{ME}=nobody"], pki.folder)
    parsed = Identities.parse([f"{ME}=billing,vault", f"{ME}=stranger"], pki.folder)
    assert parsed.names[ME] == {"billing", "vault", "stranger"}


async def test_a_sealed_method_offered_through_the_daemon(
    registry: str,
    socket: str,  # noqa: F811
    pki: Pki,  # noqa: F811
) -> None:
    svc = jesus.Service("billing", channel="tcp+msgpack")

    @svc.method(seal="encrypt", allow=["vault"], response={"type": "string"})
    async def statement(data: Any) -> str:
        return "private"

    identities = Identities({ME: frozenset({"billing"})}, pki.folder)
    async with (
        run_daemon(socket, registry=registry, identities=identities),
        provide(svc, socket=socket),
        jesus.Client(registry, tls=pki.creds("vault")) as vault_client,
        jesus.Client(registry, tls=pki.creds("stranger")) as stranger,
    ):
        (record,) = await vault_client.resolver.backend.list_instances("billing")
        assert record.methods["statement"].seal == "encrypt"
        assert record.seal  # the daemon published billing's sealing key, signed by billing
        assert await vault_client.call("billing.statement") == "private"
        with pytest.raises(jesus.PermissionDenied):
            await stranger.call("billing.statement")
