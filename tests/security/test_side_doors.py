"""No method is answered where it is not declared, and TLS covers every listener: the side
doors a new user found, each tried again the way they tried it."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from typing import Any

import anyio
import pytest

import jesus
from tests.security.conftest import Pki

pytestmark = pytest.mark.anyio
CURL = shutil.which("curl") or "curl"
JSON = ("-H", "content-type: application/json")


def vault(state: dict[str, int], udp: bool = True) -> jesus.Service:
    svc = jesus.Service("vault", channel="tcp")

    @svc.method(allow=["billing"])
    async def secret(data: Any) -> str:
        state["secret"] = state.get("secret", 0) + 1
        return "the combination"

    if udp:

        @svc.method(channel="udp")
        async def ping(data: Any) -> str:
            return "pong"

    @svc.method(channel="http+json")
    async def status(data: Any) -> str:
        return "open"

    return svc


async def forge(node: jesus.Node, method: str, channel: str) -> None:
    """Make the registry say `method` is served on `channel` (a lying registry, or a
    hand-made client that tries another door)."""
    backend = node.client.resolver.backend
    (real,) = node.records
    methods = dict(real.methods)
    methods[method] = dataclasses.replace(methods[method], channel=channel, channels=(channel,))
    await backend.register(dataclasses.replace(real, instance_id="forged", methods=methods), 30)
    await backend.deregister(real.service, real.instance_id)


async def test_tls_with_a_plaintext_listener_does_not_start(registry: str, pki: Pki) -> None:
    with pytest.raises(jesus.ConfigurationError, match=r"vault\.ping on udp") as refused:
        async with jesus.serve(vault({}), registry=registry, tls=pki.creds("vault")):
            pass
    assert "allow_plaintext" in str(refused.value)
    async with jesus.serve(
        vault({}), registry=registry, tls=pki.creds("vault"), allow_plaintext=["udp", "http"]
    ) as node:
        assert node.endpoints["tcp"].endswith("?tls=1")
        assert node.endpoints["http"].startswith("https://")


async def test_a_tcp_method_of_an_mtls_server_is_not_answered_over_udp(
    registry: str, pki: Pki
) -> None:
    state: dict[str, int] = {}
    async with jesus.serve(
        vault(state), registry=registry, tls=pki.creds("vault"), allow_plaintext=["udp"]
    ) as node:
        async with jesus.Client(registry, tls=pki.creds("billing")) as billing:
            assert await billing.call("vault.secret") == "the combination"
        async with jesus.Client(registry, tls=pki.impostor("billing")) as impostor:
            with pytest.raises(jesus.Unavailable, match="does not trust this client"):
                await impostor.call("vault.secret", timeout=5)
            assert await impostor.call("vault.ping") == "pong"  # udp, opted out explicitly
        await forge(node, "secret", "udp")
        async with jesus.Client(registry, tls=pki.impostor("billing")) as impostor:
            with pytest.raises(jesus.WrongChannel, match="not served over udp"):
                await impostor.call("vault.secret", timeout=5)
        async with jesus.Client(registry) as no_tls:  # `jesus call` with no TLS at all
            with pytest.raises(jesus.WrongChannel):
                await no_tls.call("vault.secret", timeout=5)
    assert state["secret"] == 1


async def test_curl_does_not_reach_a_tcp_method_over_http(registry: str) -> None:
    state: dict[str, int] = {}
    async with jesus.serve(vault(state, udp=False), registry=registry) as node:
        url = node.endpoints["http"]
        out = await anyio.run_process(
            [CURL, "-s", "-w", "\n%{http_code}", *JSON, "-d", "null", f"{url}/vault/secret"],
            check=False,
        )
        body, _, status = out.stdout.decode().rpartition("\n")
        assert status == "421"
        assert json.loads(body)["error"]["code"] == "WRONG_CHANNEL"
        described = json.loads((await anyio.run_process([CURL, "-s", f"{url}/vault"])).stdout)
        assert set(described["methods"]) == {"status"}
        answer = await anyio.run_process([CURL, "-s", *JSON, "-d", "null", f"{url}/vault/status"])
        assert json.loads(answer.stdout) == "open"
    assert "secret" not in state


async def test_the_allow_list_refuses_other_callers_and_logs_who(
    registry: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    state: dict[str, int] = {}
    async with jesus.serve(
        vault(state, udp=False), registry=registry, tls=pki.creds("vault"), allow_plaintext=["http"]
    ):
        async with jesus.Client(registry, tls=pki.creds("stranger"), name="billing") as stranger:
            with (
                caplog.at_level(logging.WARNING, logger="jesus.server"),
                pytest.raises(jesus.PermissionDenied, match="'stranger' may not call"),
            ):
                await stranger.call("vault.secret")
        async with jesus.Client(registry, tls=pki.creds("billing")) as billing:
            assert await billing.call("vault.secret") == "the combination"
    refusals = [r.getMessage() for r in caplog.records if "refused vault.secret" in r.getMessage()]
    assert len(refusals) == 1 and "'stranger' (proven by tls" in refusals[0]
    assert state["secret"] == 1


async def test_a_refused_certificate_is_explained_at_both_ends(
    registry: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    async with jesus.serve(
        vault({}, udp=False), registry=registry, tls=pki.creds("vault"), allow_plaintext=["http"]
    ):
        cases = {
            "expired": (pki.creds("expired"), "expired"),
            "no certificate": (
                jesus.Credentials.load(pki.folder / "ca.pem"),
                "requires a client certificate",
            ),
            "untrusted server": (
                jesus.Credentials.load(pki.untrusted / "ca.pem"),
                "certificate is not trusted",
            ),
        }
        with caplog.at_level(logging.WARNING, logger="jesus.tls"):
            for creds, why in cases.values():
                async with jesus.Client(registry, tls=creds) as client:
                    with pytest.raises(jesus.Unavailable, match=why):
                        await client.call("vault.secret", timeout=5)
    lines = [r for r in caplog.records if r.name == "jesus.tls"]
    assert len(lines) <= len(cases), [r.getMessage() for r in lines]  # one line each at most
    assert all(r.exc_info is None for r in lines)  # and no traceback
    said = " | ".join(r.getMessage() for r in lines)
    assert "certificate has expired" in said and "trust anchors" not in said
    assert "sent no client certificate" in said
