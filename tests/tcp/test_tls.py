"""TLS and mutual TLS from the user's own ssl.SSLContext; certificates made at test time."""

from __future__ import annotations

import ssl
from typing import Any

import pytest
import trustme

import jesus
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, require_client_cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


def client_context(ca: trustme.CA | None, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        ca.configure_trust(ctx)
        if cert:
            ca.issue_cert("client@jesus").configure_cert(ctx)
    return ctx


async def test_tls(running: Any, ca: trustme.CA) -> None:
    svc, _ = calculator()
    async with running(
        svc, ssl_context=server_context(ca), client={"ssl_context": client_context(ca)}
    ) as (node, client):
        assert node.endpoints["tcp"].endswith("?tls=1")
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3
        assert [i async for i in client.stream("calc.count", {"n": 5})] == [0, 1, 2, 3, 4]


async def test_tls_refuses_an_untrusted_server(running: Any, ca: trustme.CA) -> None:
    svc, _ = calculator()
    other_ca = trustme.CA()
    async with running(
        svc, ssl_context=server_context(ca), client={"ssl_context": client_context(other_ca)}
    ) as (_, client):
        with pytest.raises(jesus.Unavailable):
            await client.call("calc.add", {"a": 1, "b": 2})


async def test_mutual_tls(running: Any, ca: trustme.CA, registry: str) -> None:
    svc, _ = calculator()
    async with running(
        svc,
        ssl_context=server_context(ca, require_client_cert=True),
        client={"ssl_context": client_context(ca, cert=True)},
    ) as (_, client):
        assert await client.call("calc.add", {"a": 2, "b": 2}) == 4
        async with jesus.Client(registry, ssl_context=client_context(ca)) as no_cert:
            with pytest.raises(jesus.Unavailable):
                await no_cert.call("calc.add", {"a": 2, "b": 2})
        assert await client.call("calc.add", {"a": 3, "b": 3}) == 6
