"""Events: emit, listener groups, wildcards, broadcast, ack and failures, over every channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

import jesus
from jesus.event_names import matches
from jesus.messages import ResponseMode
from jesus.registry.base import InstanceRecord
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ["tcp+msgpack", "unix+json", "udp+msgpack", "http+json+gzip", "zmq+msgpack"]
USER = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        ("user.created", "user.created", True),
        ("user.created", "user.deleted", False),
        ("user.*", "user.created", True),
        ("user.*", "user.profile.updated", True),
        ("user.*", "user", False),
        ("user.*", "users.created", False),
        ("a.b.*", "a.b.c", True),
        ("a.b.*", "a.bc", False),
    ],
)
def test_wildcard_rule(pattern: str, event: str, expected: bool) -> None:
    assert matches(pattern, event) is expected


def listener(
    name: str, seen: list[Any], channel: str, pattern: str = "user.*", group: str | None = None
) -> jesus.Service:
    svc = jesus.Service(name, channel=channel)

    @svc.listener(pattern, schema=USER, channel=channel, group=group)
    async def on_event(data: dict[str, Any]) -> None:
        meta = jesus.current_call()
        assert meta is not None
        seen.append(
            {
                "service": name,
                "instance": id(svc),
                "event": meta.event,
                "id": data["id"],
                "from": meta.sender,
                "corrid": meta.corrid,
            }
        )

    return svc


@pytest.mark.parametrize("channel", CHANNELS)
async def test_each_group_gets_each_event_once_spread_over_its_instances(
    registry: str, channel: str
) -> None:
    seen: list[Any] = []
    audits = [listener("audit", seen, channel) for _ in range(3)]
    mailer = listener("mailer", seen, channel, pattern="user.created")
    emitter = jesus.Service("accounts")
    emitter.emitter("user.created", schema=USER, mode="ack")
    async with AsyncExitStack() as stack:
        for svc in [*audits, mailer, emitter]:
            await stack.enter_async_context(jesus.serve(svc, registry=registry))
        for i in range(30):
            assert await emitter.emit("user.created", {"id": i}) == ["audit", "mailer"]
        await wait_until(lambda: len(seen) == 60)
    per_group = Counter(e["service"] for e in seen)
    assert per_group == {"audit": 30, "mailer": 30}
    assert sorted(e["id"] for e in seen if e["service"] == "audit") == list(range(30))  # once each
    per_instance = Counter(e["instance"] for e in seen if e["service"] == "audit")
    assert len(per_instance) == 3 and min(per_instance.values()) >= 5  # spread
    assert {e["event"] for e in seen} == {"user.created"} and {e["from"] for e in seen} == {
        "accounts"
    }


@pytest.mark.parametrize("channel", ["tcp+msgpack", "udp+msgpack", "zmq+msgpack"])
async def test_broadcast_reaches_every_instance(registry: str, channel: str) -> None:
    seen: list[Any] = []
    audits = [listener("audit", seen, channel) for _ in range(3)]
    async with AsyncExitStack() as stack:
        for svc in audits:
            await stack.enter_async_context(jesus.serve(svc, registry=registry))
        client = await stack.enter_async_context(jesus.Client(registry))
        await client.emit("user.banned", {"id": 1}, broadcast=True, mode="ack")
        await wait_until(lambda: len(seen) == 3)
    assert len({e["instance"] for e in seen}) == 3


async def test_events_carry_the_corrid_of_the_handler_that_emits(registry: str) -> None:
    seen: list[Any] = []
    audit = listener("audit", seen, "tcp+msgpack")
    accounts = jesus.Service("accounts")

    @accounts.method()
    async def signup(data: Any) -> str:
        await accounts.emit("user.created", {"id": 7}, mode="ack")
        meta = jesus.current_call()
        return meta.corrid if meta else ""

    async with jesus.serve(audit, accounts, registry=registry), jesus.Client(registry) as client:
        corrid = await client.call("accounts.signup")
        await wait_until(lambda: seen)
    assert seen[0]["corrid"] == corrid and seen[0]["from"] == "accounts"


async def test_ack_names_the_groups_that_failed(registry: str) -> None:
    seen: list[Any] = []
    good = listener("audit", seen, "tcp+msgpack")
    picky = jesus.Service("picky")

    @picky.listener("user.*", schema={"type": "object", "required": ["email"]})
    async def needs_email(data: Any) -> None:
        seen.append("picky")

    async with jesus.serve(good, picky, registry=registry), jesus.Client(registry) as client:
        # a listener registered but gone: its endpoint refuses connections
        ghost = InstanceRecord(
            service="ghost",
            version="1",
            instance_id="dead",
            endpoints={"tcp": "tcp://127.0.0.1:9"},
            listens={"user.*": {"schema": True, "channel": "tcp+msgpack+none", "group": "ghosts"}},
        )
        await client.resolver.backend.register(ghost, ttl=30)
        client.resolver.forget()
        with pytest.raises(jesus.EventNotDelivered) as failed:
            await client.emit("user.created", {"id": 1}, mode="ack")
        assert set(failed.value.failures) == {"ghosts", "picky"}
        assert isinstance(failed.value.failures["picky"], jesus.InvalidRequest)
        assert isinstance(failed.value.failures["ghosts"], jesus.Unavailable)
        assert failed.value.delivered == ["audit"]
        # noResponse: nothing raised, failures counted and logged
        delivered = await client.emit("user.created", {"id": 2})
        assert "audit" in delivered and client.event_failures["ghosts"] == 2
        await wait_until(lambda: len([s for s in seen if s != "picky"]) == 2)


async def test_emit_with_no_listener_and_bad_names(registry: str) -> None:
    async with jesus.Client(registry) as client:
        assert await client.emit("nobody.listens", {}) == []
        with pytest.raises(jesus.ConfigurationError):
            await client.emit("bad..name", {})
        with pytest.raises(jesus.ConfigurationError):
            await client.emit("x.y", {}, mode=ResponseMode.STREAM)


def test_cli_emit_and_services(registry: str, tmp_path: Path) -> None:
    module = tmp_path / "listeners.py"
    module.write_text(
        "import jesus\n"
        "svc = jesus.Service('audit')\n"
        "seen = []\n"
        "@svc.listener('user.*', channel='udp+msgpack')\n"
        "async def on_user(data):\n"
        "    print('got', jesus.current_call().event, data, flush=True)\n"
    )
    env = {**os.environ, "JESUS_REGISTRY": registry, "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "jesus", "serve", "listeners:svc"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("serving audit")

        def jesus(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "jesus", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        with ThreadPoolExecutor(1) as pool:  # the listing meanwhile: it does not depend on it
            services = pool.submit(jesus, "services")
            out = jesus("emit", "user.created", '{"id": 5}', "--ack")
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout) == {"event": "user.created", "delivered_to": ["audit"]}
            deadline = time.monotonic() + 10
            line = server.stdout.readline()
            assert line.strip() == "got user.created {'id': 5}" and time.monotonic() < deadline
            listing = services.result().stdout
        assert "listens user.*  group audit over udp+msgpack+none" in listing
    finally:
        server.terminate()
        server.wait(timeout=30)


async def test_two_listeners_of_one_service_both_get_a_matching_event(registry: str) -> None:
    got: list[str] = []
    svc = jesus.Service("shop")

    @svc.listener("order.*", channel="udp+msgpack")
    async def any_order(data: Any) -> None:
        got.append("order.*")

    @svc.listener("order.placed", channel="tcp+msgpack")
    async def placed(data: Any) -> None:
        got.append("order.placed")

    async with jesus.serve(svc, registry=registry), jesus.Client(registry) as client:
        assert await client.emit("order.placed", {}, mode="ack") == ["shop"]
        assert await client.emit("order.cancelled", {}, mode="ack") == ["shop"]
        await wait_until(lambda: len(got) == 3)
    assert sorted(got) == ["order.*", "order.*", "order.placed"]


@pytest.mark.parametrize("broadcast", [False, True])
async def test_one_event_keeps_one_corrid_across_every_group(
    registry: str, broadcast: bool
) -> None:
    seen: list[Any] = []
    groups = [
        listener("audit", seen, "tcp+msgpack"),
        listener("audit", seen, "tcp+msgpack"),
        listener("mailer", seen, "udp+msgpack"),
        listener("search", seen, "http+json"),
    ]
    async with AsyncExitStack() as stack:
        for svc in groups:
            await stack.enter_async_context(jesus.serve(svc, registry=registry))
        client = await stack.enter_async_context(jesus.Client(registry))
        expected = 4 if broadcast else 3
        for i, mode in enumerate(["ack", "noResponse"]):
            delivered = await client.emit("user.created", {"id": i}, mode=mode, broadcast=broadcast)
            assert delivered == ["audit", "mailer", "search"]
            await wait_until(lambda i=i: len([e for e in seen if e["id"] == i]) == expected)
    by_event = {i: {e["corrid"] for e in seen if e["id"] == i} for i in (0, 1)}
    assert len(by_event[0]) == 1 and len(by_event[1]) == 1, by_event
    assert by_event[0] != by_event[1]  # each emit is its own


PICKY = {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]}
AT_FAULT = '/email: 5 is not of type "string"'


@pytest.mark.parametrize("channel", ["tcp+msgpack", "udp+msgpack"])
async def test_an_event_its_listener_refuses_names_the_fields_at_fault(
    registry: str, channel: str, caplog: pytest.LogCaptureFixture
) -> None:
    picky = jesus.Service("picky", channel=channel)

    @picky.listener("user.*", schema=PICKY, channel=channel)
    async def needs_email(data: Any) -> None: ...

    async with jesus.serve(picky, registry=registry):
        # Checked by the emitter against the listener's published schema...
        async with jesus.Client(registry) as client:
            with pytest.raises(jesus.EventNotDelivered) as caught:
                await client.emit("user.created", {"email": 5}, mode="ack")
            refused = caught.value.failures["picky"]
            assert isinstance(refused, jesus.InvalidRequest) and not refused.remote
            assert refused.details == [AT_FAULT]
            assert caught.value.details == {"picky": [AT_FAULT]}
            assert "schema of picky's listener user.*" in str(caught.value)
            assert AT_FAULT in str(caught.value)
            with caplog.at_level("WARNING", logger="jesus.client"):
                assert await client.emit("user.created", {"email": 5}) == []
            assert any(AT_FAULT in r.getMessage() for r in caplog.records)
        # ...and by the listener itself, when the emitter does not check.
        async with jesus.Client(registry, validate=False) as client:
            with pytest.raises(jesus.EventNotDelivered) as caught:
                await client.emit("user.created", {"email": 5}, mode="ack")
            refused = caught.value.failures["picky"]
            assert isinstance(refused, jesus.InvalidRequest) and refused.remote
            assert refused.details == [AT_FAULT]
            assert "event user.created does not match the schema of picky's listener user.*" in (
                refused.message
            )
            caplog.clear()
            with caplog.at_level("WARNING", logger="jesus.server"):
                assert await client.emit("user.created", {"email": 5}) == ["picky"]
                await wait_until(
                    lambda: any(
                        "refused a noResponse call" in r.getMessage() for r in caplog.records
                    )
                )
            (line,) = [
                r.getMessage() for r in caplog.records if "refused a noResponse" in r.getMessage()
            ]
            assert "picky.~user.*" in line and AT_FAULT in line
