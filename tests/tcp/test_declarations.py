"""What a service declares reaches the registry, so peers can find and check it."""

from __future__ import annotations

from typing import Any

import pytest

import jesus

pytestmark = pytest.mark.anyio


def users() -> jesus.Service:
    svc = jesus.Service("users", version="2.1.0", channel="tcp+msgpack")

    @svc.method(request={"type": "object"}, response={"type": "object"}, mode="ack")
    async def rename(data: Any) -> None:
        """Rename a user."""

    @svc.listener(
        "billing.*", schema={"type": "object"}, channel="unix+json", group="users-workers"
    )
    async def on_billing(data: Any) -> None:
        pass

    svc.emitter("user.created", schema={"type": "object", "required": ["id"]})
    return svc


async def test_methods_listeners_and_emits_are_published(registry: str) -> None:
    async with jesus.serve(users(), registry=registry) as node:
        (record,) = await node.client.resolver.backend.list_instances("users")
    assert record.version == "2.1.0"
    assert set(record.endpoints) == {"tcp", "unix"}  # the listener's channel is served too
    assert record.methods["rename"].mode is jesus.ResponseMode.ACK
    assert record.methods["rename"].description == "Rename a user."
    assert record.listens == {
        "billing.*": {
            "schema": {"type": "object"},
            "channel": "unix+json+none",
            "channels": ["unix+json+none"],
            "group": "users-workers",
        }
    }
    assert record.emits["user.created"]["schema"]["required"] == ["id"]


@pytest.mark.parametrize("bad", ["", "user..x", "user.*.x", "*"])
def test_bad_event_names_are_refused(bad: str) -> None:
    svc = jesus.Service("s")
    with pytest.raises(jesus.ConfigurationError):
        svc.listener(bad)


def test_declaration_mistakes_fail_early() -> None:
    svc = jesus.Service("s")
    with pytest.raises(jesus.SchemaError):
        svc.method(request={"type": "nope"})
    with pytest.raises(jesus.ConfigurationError, match="async generator"):

        @svc.method(mode="stream")
        async def not_a_generator(data: Any) -> Any:
            return data

    with pytest.raises(jesus.ConfigurationError, match="async function"):

        @svc.method()
        def not_async(data: Any) -> Any:
            return data

    with pytest.raises(jesus.ConfigurationError, match="no dots"):
        jesus.Service("a.b")
    with pytest.raises(jesus.ConfigurationError, match="transport"):
        jesus.Service("s", channel="a+b+c+d")
