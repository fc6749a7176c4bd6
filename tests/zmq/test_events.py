"""Events over zmq go as calls over ROUTER/DEALER (PROTOCOL.md, "zeromq mapping"), not over
PUB/SUB: each listener group gets each event once, spread over its instances; an ack event
fails over to another instance of a group when one is gone; and events for a listener that
cannot keep up wait (and in the end its emitter does) instead of being dropped, as PUB/SUB
drops them past its high-water mark."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

import jesus
from jesus.registry.base import InstanceRecord
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio
CHANNEL = "zmq+msgpack"


def audit(
    seen: list[Any], gate: anyio.Event | None = None, waiting: list[int] | None = None
) -> jesus.Service:
    svc = jesus.Service("audit", channel=CHANNEL)

    @svc.listener("user.*", channel=CHANNEL, group="auditors")
    async def on_user(data: dict[str, Any]) -> None:
        if gate is not None and not gate.is_set():
            assert waiting is not None
            waiting.append(data["id"])
            await gate.wait()
        seen.append((id(svc), data["id"]))

    return svc


async def test_a_group_shares_each_event_and_an_ack_fails_over(registry: str) -> None:
    seen: list[Any] = []
    async with AsyncExitStack() as stack:
        for _ in range(2):
            await stack.enter_async_context(jesus.serve(audit(seen), registry=registry))
        client = await stack.enter_async_context(jesus.Client(registry))
        # A third instance of the group, registered but gone: nothing listens on its port.
        ghost = InstanceRecord(
            service="audit",
            version="1",
            instance_id="gone",
            endpoints={"zmq": "zmq://127.0.0.1:9"},
            listens={"user.*": {"schema": True, "channel": CHANNEL, "group": "auditors"}},
        )
        await client.resolver.backend.register(ghost, ttl=30)
        client.resolver.forget()
        for i in range(12):
            assert await client.emit("user.created", {"id": i}, mode="ack") == ["auditors"]
        await wait_until(lambda: len(seen) == 12)
    assert sorted(i for _, i in seen) == list(range(12))  # each once, none lost to the ghost
    per_instance = Counter(instance for instance, _ in seen)
    assert len(per_instance) == 2 and min(per_instance.values()) >= 3  # spread over both


async def test_events_wait_for_a_stuck_listener_and_none_is_lost(registry: str) -> None:
    """noResponse events far past what the listener takes in (64 calls in flight, a backlog
    of 1024) and past zeromq's high-water mark of 1000 messages, while it is stuck: they
    wait (the server stops reading, the pipes fill, then the emitter waits; no
    event is refused) and all of them arrive once it moves."""
    seen: list[Any] = []
    waiting: list[int] = []
    gate = anyio.Event()
    limits = jesus.Limits(max_inflight_calls=64)
    count = 3000
    async with (
        jesus.serve(audit(seen, gate, waiting), registry=registry, limits=limits) as node,
        jesus.Client(registry) as client,
    ):
        for i in range(count):
            await client.emit("user.seen", {"id": i})
        await wait_until(lambda: len(waiting) == 64)  # the listener is full
        await anyio.sleep(0.2)
        assert len(waiting) == 64 and seen == []  # and takes no more
        gate.set()
        await wait_until(lambda: len(seen) == count, timeout=20)
        server: Any = node.servers["zmq"]
        assert not server.runner.refused and not client.event_failures
    assert sorted(i for _, i in seen) == list(range(count))
