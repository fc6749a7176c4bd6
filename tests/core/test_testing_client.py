"""jesus.testing.TestClient: a user's services called in memory, with no socket, answering
exactly as they do over a real transport."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import jesus
from jesus.testing import TestClient
from jesus.testing.transport import conformance_service

pytestmark = pytest.mark.anyio
USER = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}


def shop() -> tuple[jesus.Service, jesus.Service, list[Any]]:
    """orders calls billing and emits order.placed, which billing listens to over udp."""
    seen: list[Any] = []
    billing = jesus.Service("billing", channel="tcp+msgpack")

    @billing.method(request={"type": "object", "required": ["amount"]})
    async def charge(data: Any) -> dict[str, Any]:
        meta = jesus.current_call()
        return {"charged": data["amount"], "corrid": meta.corrid if meta else None}

    @billing.listener("order.*", schema=USER, channel="udp+json")
    async def on_order(data: Any) -> None:
        meta = jesus.current_call()
        seen.append((meta.event if meta else None, data, meta.corrid if meta else None))

    orders = jesus.Service("orders", channel="http+json")
    orders.emitter("order.placed", schema=USER, mode="ack")

    @orders.method()
    async def place(data: Any) -> dict[str, Any]:
        charged = await orders.call("billing.charge", {"amount": 5})
        await orders.emit("order.placed", {"id": data["id"]})
        return charged

    return billing, orders, seen


def refuse_sockets(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any socket made from now on fails the test (the event loop, running, has its own)."""
    made: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        raise AssertionError("TestClient opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "socketpair", refuse)
    return made


async def test_every_mode_and_events_with_no_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    no_sockets = refuse_sockets(monkeypatch)
    svc, state = conformance_service("tcp+msgpack", frozenset(jesus.ResponseMode))
    billing, orders, seen = shop()
    async with TestClient(svc, billing, orders) as client:
        assert await client.call("conf.add", {"a": 1, "b": 2}) == 3
        assert [i async for i in client.stream("conf.count", {"n": 4})] == [0, 1, 2, 3]
        state.gate.set()
        assert await client.call("conf.record", {"x": 1}) is None  # ack
        await client.notify("conf.fire", {"y": 2})
        placed = await client.call("orders.place", {"id": 7})  # http -> tcp, emit over udp
        assert placed["charged"] == 5
        assert await client.emit("order.shipped", {"id": 8}, mode="ack") == ["billing"]
        with anyio.fail_after(5):
            while not (state.acked and state.notified):
                await anyio.sleep(0.01)
        assert set(client.node.endpoints) == {"tcp", "http", "udp"}
        monkeypatch.undo()  # the event loop may make its own on the way out
    assert state.acked == [{"x": 1}] and state.notified == [{"y": 2}]
    assert seen[0] == ("order.placed", {"id": 7}, placed["corrid"])  # one corrid throughout
    assert seen[1][:2] == ("order.shipped", {"id": 8})
    assert no_sockets == []


# Each scenario: a call, made the same way through TestClient and over real tcp.
Scenario = Callable[[Any], Any]


async def _call(client: Any, target: str, data: Any = None, **kwargs: Any) -> Any:
    return await client.call(target, data, **kwargs)


async def _stream(client: Any, target: str, data: Any = None, **kwargs: Any) -> Any:
    return [item async for item in client.stream(target, data, **kwargs)]


SCENARIOS: dict[str, tuple[Any, str, Any, set[str]]] = {
    "invalid request, refused by the client": (_call, "conf.add", {"a": "x"}, set()),
    "invalid request, refused by the server": (_call, "conf.add", {"a": "x"}, {"novalidate"}),
    "invalid response": (_call, "conf.wrong", None, set()),
    "handler raised": (_call, "conf.boom", None, set()),
    "typed error raised": (
        _call,
        "conf.fail",
        {"error": "Unavailable", "message": "busy"},
        set(),
    ),
    "unencodable result": (_call, "conf.unencodable", None, set()),
    "unknown method": (_call, "conf.nothing", None, set()),
    "a stream method called": (_call, "conf.count", {"n": 1}, set()),
    "a method streamed": (_stream, "conf.add", {"a": 1, "b": 2}, set()),
    "a stream failing midway": (_stream, "conf.count", {"n": 2, "fail": True}, set()),
    "not allowed": (_call, "conf.guarded", None, set()),
    "too large": (_call, "conf.echo", "x" * 5000, {"small"}),
    "past its deadline": (_call, "conf.sleep", 5.0, {"timeout"}),
    "an ack call, forced": (_call, "conf.add", {"a": 1, "b": 2}, {"ack"}),
}


def outcome(exc: BaseException | None, value: Any = None) -> Any:
    if exc is None:
        return ("ok", value)
    assert isinstance(exc, jesus.CallError), repr(exc)
    return (type(exc).__name__, exc.message, exc.details, exc.remote)


async def run_scenario(client: Any, scenario: tuple[Any, str, Any, set[str]]) -> Any:
    how, target, data, flags = scenario
    kwargs: dict[str, Any] = {}
    if "timeout" in flags:
        kwargs["timeout"] = 0.2
    if "ack" in flags:
        kwargs["mode"] = "ack"
    client.validate = "novalidate" not in flags
    try:
        return outcome(None, await how(client, target, data, **kwargs))
    except jesus.CallError as exc:
        return outcome(exc)
    finally:
        client.validate = True


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_answers_are_those_of_a_real_transport(name: str, registry: str) -> None:
    scenario = SCENARIOS[name]
    limits = jesus.Limits(max_message_size=4096) if "small" in scenario[3] else None
    svc, _ = conformance_service("tcp+msgpack", frozenset(jesus.ResponseMode))
    async with TestClient(svc, limits=limits) as tested:
        in_memory = await run_scenario(tested.client, scenario)
    svc, _ = conformance_service("tcp+msgpack", frozenset(jesus.ResponseMode))
    async with jesus.serve(svc, registry=registry, limits=limits), jesus.Client(registry) as real:
        over_tcp = await run_scenario(real, scenario)
    if name == "past its deadline":  # who notices first, the caller or the server, is a race
        assert in_memory[0] == over_tcp[0] == "DeadlineExceeded"
    else:
        assert in_memory == over_tcp
    assert in_memory[0] != "ok" or name == "an ack call, forced"


async def test_a_named_caller_passes_an_allow_list() -> None:
    svc, state = conformance_service("tcp+msgpack", frozenset(jesus.ResponseMode))
    async with TestClient(svc, caller="friend") as client:
        assert await client.call("conf.guarded") == "welcome"
        who = await client.call("conf.whoami")
    assert who["name"] == "friend" and state.calls["guarded"] == 1


async def test_a_listener_schema_refusal_names_the_fields() -> None:
    billing, _, seen = shop()
    async with TestClient(billing, client={"validate": False}) as client:
        with pytest.raises(jesus.EventNotDelivered) as refused:
            await client.emit("order.placed", {"id": "seven"}, mode="ack")
    assert refused.value.details == {"billing": ['/id: "seven" is not of type "integer"']}
    assert seen == []


async def test_leaving_a_stream_or_timing_out_stops_the_handler() -> None:
    svc, state = conformance_service("tcp+msgpack", frozenset(jesus.ResponseMode))
    async with TestClient(svc) as client:
        async with contextlib.aclosing(client.stream("conf.count", {"n": 10**6})) as items:
            async for item in items:
                if item == 3:
                    break
        with anyio.fail_after(5):
            while not state.stream_stopped:
                await anyio.sleep(0.01)
        assert state.produced < 10**6
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("conf.sleep", 10.0, timeout=0.1)
        with anyio.fail_after(5):
            while not state.sleep_stopped:
                await anyio.sleep(0.01)


async def test_what_serve_refuses_it_refuses() -> None:
    svc = jesus.Service("pings", channel="udp")

    @svc.method(mode="stream")
    async def ticks(data: Any) -> Any:
        yield 1

    with pytest.raises(jesus.ConfigurationError, match="which udp cannot carry"):
        async with TestClient(svc):
            pass


async def test_outside_its_block_it_says_how_to_use_it() -> None:
    client = TestClient(jesus.Service("idle"))
    with pytest.raises(RuntimeError, match="async with TestClient"):
        await client.call("idle.x")
