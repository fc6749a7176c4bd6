"""An encrypted call's errors are the caller's to read: a schema error quotes the request,
a handler's exception may quote anything. Their message and details travel sealed; the code
stays readable (for relays and metrics)."""

from __future__ import annotations

from typing import Any

import pytest

import jesus
from jesus.messages import Meta
from jesus.sealing.seal import Opener, Sealer, open_error, seal_error
from tests.security.conftest import Pki

pytestmark = pytest.mark.anyio


def secret_service(channel: str) -> jesus.Service:
    svc = jesus.Service("vault", channel=channel)

    @svc.method(
        seal="encrypt", request={"type": "object", "properties": {"pin": {"type": "integer"}}}
    )
    async def secret(data: dict[str, Any]) -> None:
        raise ValueError(f"wrong pin {data['pin']}")

    if channel != "udp":

        @svc.method(seal="encrypt", mode="stream")
        async def items(data: Any) -> Any:
            yield 1
            raise RuntimeError("code 1234 broke")

    return svc


def sealed_pair(pki: Pki) -> tuple[Sealer, Opener, Any]:
    opener = Opener(pki.creds("vault"))
    sealer = Sealer(pki.creds("billing"))
    key = sealer.recipient("vault", "one", opener.ring.published("vault"))
    return sealer, opener, key


def test_a_sealed_error_shows_only_its_code(pki: Pki) -> None:
    sealer, opener, key = sealed_pair(pki)
    meta = Meta()
    blob, caller_side = sealer.seal_request(key, "encrypt", "msgpack", b"\xc0", "vault.x", meta)
    *_, server_side = opener.open_request(blob, "vault.x", meta, "encrypt")
    error = jesus.InvalidRequest("pin 8642 is wrong", details=["/pin: 8642"], corrid="c-9")
    on_the_wire = seal_error(server_side, error).to_wire()
    assert on_the_wire["code"] == "INVALID_REQUEST" and on_the_wire["corrid"] == "c-9"
    assert "8642" not in str(on_the_wire)
    received = jesus.errors.error_from_wire(on_the_wire)
    opened = open_error(caller_side, received)
    assert (opened.message, opened.details) == ("pin 8642 is wrong", ["/pin: 8642"])
    # Another call's keys cannot open it, and a bit flipped in it is caught.
    _, other_call = sealer.seal_request(key, "encrypt", "msgpack", b"\xc0", "vault.x", Meta())
    with pytest.raises(jesus.SealRefused):
        open_error(other_call, jesus.errors.error_from_wire(on_the_wire))
    tampered = dict(on_the_wire, details={"sealed": on_the_wire["details"]["sealed"][:-4] + "AAA="})
    with pytest.raises(jesus.SealRefused):
        open_error(caller_side, jesus.errors.error_from_wire(tampered))


@pytest.mark.parametrize("channel", ["tcp", "udp", "http+json"])
async def test_the_caller_reads_its_errors_in_full(registry: str, pki: Pki, channel: str) -> None:
    async with (
        jesus.serve(secret_service(channel), registry=registry, sealing=pki.creds("vault")),
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        with pytest.raises(jesus.InvalidRequest) as invalid:
            await client.call("vault.secret", {"pin": "s3cr3t"})
        assert invalid.value.details == ['/pin: "s3cr3t" is not of type "integer"']
        with pytest.raises(jesus.RemoteFailure, match="wrong pin 42"):
            await client.call("vault.secret", {"pin": 42})
        if channel != "udp":
            with pytest.raises(jesus.RemoteFailure, match="code 1234 broke"):
                async for _ in client.stream("vault.items"):
                    pass
