"""A resolver that prefers this host's instances (the node daemon's: what it serves itself
goes first), still spreading over them, and falling back to the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from jesus.registry.base import InstanceRecord
from jesus.registry.embedded import EmbeddedRegistry
from jesus.registry.resolver import Resolver

pytestmark = pytest.mark.anyio


def record(instance: str, host: str) -> InstanceRecord:
    return InstanceRecord(
        "calc", "1.0.0", instance, {"tcp": f"tcp://127.0.0.1:{len(instance)}"}, {}, host=host
    )


async def test_this_hosts_instances_come_first_and_share_the_calls(tmp_path: Path) -> None:
    backend = EmbeddedRegistry(f"embedded://{tmp_path}")
    for instance, host in [("a1", "far"), ("h1", "here"), ("a2", "far"), ("h2", "here")]:
        await backend.register(record(instance, host), 30)
    resolver = Resolver(backend, prefer_host="here")
    firsts = []
    for _ in range(4):
        route = await resolver.pick("calc")
        assert [r.host for r in route] == ["here", "here", "far", "far"]
        firsts.append(route[0].instance_id)
    assert set(firsts) == {"h1", "h2"}  # spread over this host's instances
    resolver.mark_failed(next(r for r in route if r.instance_id == "h1"))
    resolver.mark_failed(next(r for r in route if r.instance_id == "h2"))
    route = await resolver.pick("calc")
    assert route[0].host == "far"  # both of this host's failed: another host's serves


async def test_without_a_preference_every_host_takes_its_turn(tmp_path: Path) -> None:
    backend = EmbeddedRegistry(f"embedded://{tmp_path}")
    for instance, host in [("a1", "far"), ("h1", "here")]:
        await backend.register(record(instance, host), 30)
    resolver = Resolver(backend)
    assert {(await resolver.pick("calc"))[0].host for _ in range(4)} == {"far", "here"}
