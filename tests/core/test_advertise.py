"""The host a server shows the registry, apart from the interface it is bound to."""

from __future__ import annotations

from typing import Any

import pytest

import jesus
from jesus.transport.advertise import advertised
from tests.helpers.services import calculator


@pytest.mark.parametrize(
    ("endpoint", "host", "shown"),
    [
        ("tcp://0.0.0.0:4000", "10.1.2.3", "tcp://10.1.2.3:4000"),
        ("tcp://0.0.0.0:4000?tls=1", "node-7", "tcp://node-7:4000?tls=1"),
        ("http://[::]:80", "fd00::5", "http://[fd00::5]:80"),
        ("unix:///run/x.sock", "10.1.2.3", "unix:///run/x.sock"),
        ("tcp://127.0.0.1:4000", None, "tcp://127.0.0.1:4000"),
    ],
)
def test_advertised(endpoint: str, host: str | None, shown: str) -> None:
    assert advertised(endpoint, host) == shown


@pytest.mark.anyio
async def test_serve_shows_the_advertised_host(registry: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("JESUS_ADVERTISE_HOST", "127.0.0.1")
    svc, _ = calculator()
    async with (
        jesus.serve(svc, registry=registry, bind={"tcp": "0.0.0.0:0"}) as node,
        jesus.Client(registry) as client,
    ):
        assert node.records[0].endpoints["tcp"].startswith("tcp://127.0.0.1:")
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3
