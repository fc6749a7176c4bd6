"""The server-side life of a call, written once in jesus.transport.runner: driven here with the
core's real dispatcher and a Reply that records what a transport would have sent."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import jesus
from jesus.messages import ResponseMode
from jesus.plugins import default_catalog
from jesus.runtime.dispatcher import CallDispatcher
from jesus.transport import CallRunner
from jesus.validation.cache import ValidatorCache
from tests.helpers import wait_until

pytestmark = pytest.mark.anyio


class RecordingReply:
    """What a transport would send, in order."""

    always_answers = False

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []
        self.open = True
        self.closed = anyio.Event()

    def ack(self) -> None:
        self.open = False
        self.sent.append(("ack", None))

    def result(self, value: Any) -> None:
        if isinstance(value, set):
            raise ValueError("cannot encode a set")
        self.open = False
        self.sent.append(("result", value))

    def error(self, error: jesus.CallError) -> None:
        self.open = False
        self.sent.append(("error", error.code))

    def item(self, value: Any) -> None:
        self.sent.append(("item", value))

    def end(self) -> None:
        self.open = False
        self.sent.append(("end", None))

    def close(self) -> None:
        self.sent.append(("close", None))
        self.closed.set()


class AnsweringReply(RecordingReply):
    """HTTP's kind: every request is answered, noResponse ones with an ack."""

    always_answers = True


def service() -> tuple[jesus.Service, dict[str, Any]]:
    svc = jesus.Service("svc")
    state: dict[str, Any] = {"ran": [], "gate": anyio.Event()}

    @svc.method(request={"type": "integer"}, response={"type": "integer"})
    async def double(data: int) -> int:
        return data * 2

    @svc.method(response={"type": "integer"})
    async def wrong(data: Any) -> Any:
        return "not an integer"

    @svc.method()
    async def unencodable(data: Any) -> Any:
        return {1, 2}

    @svc.method()
    async def sleep(data: float) -> str:
        await anyio.sleep(data)
        return "slept"

    @svc.method(mode="ack")
    async def gated(data: Any) -> None:
        await state["gate"].wait()
        state["ran"].append(data)

    @svc.method(mode="noResponse")
    async def fire(data: Any) -> None:
        state["ran"].append(data)

    @svc.method(mode="stream")
    async def count(data: int) -> AsyncIterator[int]:
        for i in range(data):
            yield i

    return svc, state


def meta(corrid: str = "c-1", deadline_ms: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"c": corrid}
    if deadline_ms is not None:
        out["d"] = deadline_ms
    return out


def make_runner(
    limits: jesus.Limits | None = None, modes: frozenset[ResponseMode] = frozenset(ResponseMode)
) -> tuple[CallRunner, dict[str, Any]]:
    svc, state = service()
    dispatcher = CallDispatcher([svc], ValidatorCache(default_catalog().validators))
    return CallRunner(dispatcher.served_over("tcp"), limits or jesus.Limits(), modes), state


async def run(
    reply: RecordingReply,
    method: str,
    data: Any,
    mode: ResponseMode,
    raw_meta: Any = None,
    limits: jesus.Limits | None = None,
    modes: frozenset[ResponseMode] = frozenset(ResponseMode),
) -> tuple[CallRunner, dict[str, Any]]:
    runner, state = make_runner(limits, modes)
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        session = runner.session()
        session.admit(1, method, raw_meta or meta(), data, mode, reply)
        with anyio.fail_after(5):
            await reply.closed.wait()
        state["session"] = session
        tg.cancel_scope.cancel()
    await runner.aclose()
    return runner, state


async def test_a_response_is_checked_then_sent_then_closed() -> None:
    reply = RecordingReply()
    await run(reply, "svc.double", 21, ResponseMode.RESPONSE)
    assert reply.sent == [("result", 42), ("close", None)]


async def test_refusals_are_answered_and_nothing_runs() -> None:
    for method, data, raw_meta, code in [
        ("svc.nope", 1, meta(), "UNKNOWN_METHOD"),
        ("svc.double", "x", meta(), "INVALID_REQUEST"),
        ("svc.double", 1, {"c": 7}, "INVALID_REQUEST"),  # bad meta
        ("svc.count", 1, meta(), "INVALID_REQUEST"),  # a stream called as a response
    ]:
        reply = RecordingReply()
        await run(reply, method, data, ResponseMode.RESPONSE, raw_meta)
        assert reply.sent == [("error", code), ("close", None)], method


async def test_a_mode_the_transport_cannot_carry_is_refused() -> None:
    reply = RecordingReply()
    udp_modes = frozenset(ResponseMode) - {ResponseMode.STREAM}
    await run(reply, "svc.count", 3, ResponseMode.STREAM, modes=udp_modes)
    assert reply.sent == [("error", "INVALID_REQUEST"), ("close", None)]


async def test_an_invalid_answer_is_refused_to_the_caller_and_logged_here(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="jesus.server")
    for method in ("svc.wrong", "svc.unencodable"):
        reply = RecordingReply()
        await run(reply, method, None, ResponseMode.RESPONSE)
        assert reply.sent == [("error", "INVALID_RESPONSE"), ("close", None)]
        assert any(
            method in r.getMessage() and "invalid answer" in r.getMessage() for r in caplog.records
        ), method


async def test_ack_goes_out_before_the_handler_runs() -> None:
    runner, state = make_runner()
    reply = RecordingReply()
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        session = runner.session()
        session.admit(1, "svc.gated", meta(), "a", ResponseMode.ACK, reply)
        await anyio.sleep(0.05)
        assert reply.sent == [("ack", None)] and state["ran"] == []
        # The peer leaving does not stop a call it already handed over.
        session.close()
        state["gate"].set()
        await wait_until(lambda: state["ran"] == ["a"])
        await reply.closed.wait()
    assert reply.sent == [("ack", None), ("close", None)]


async def test_a_refused_no_response_call_is_logged_not_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="jesus.server")
    reply = RecordingReply()
    await run(reply, "svc.nope", None, ResponseMode.NO_RESPONSE)
    assert reply.sent == [("close", None)]
    assert any("refused a noResponse call to svc.nope" in r.getMessage() for r in caplog.records)
    # A transport that answers every request (HTTP) gets the error instead, or a 202.
    answering = AnsweringReply()
    await run(answering, "svc.nope", None, ResponseMode.NO_RESPONSE)
    assert answering.sent == [("error", "UNKNOWN_METHOD"), ("close", None)]
    accepted = AnsweringReply()
    await run(accepted, "svc.fire", 1, ResponseMode.NO_RESPONSE)
    assert accepted.sent[0] == ("ack", None)


async def test_the_deadline_is_answered_and_the_handler_stopped() -> None:
    reply = RecordingReply()
    started = anyio.current_time()
    await run(reply, "svc.sleep", 30, ResponseMode.RESPONSE, meta(deadline_ms=100))
    assert reply.sent == [("error", "DEADLINE_EXCEEDED"), ("close", None)]
    assert anyio.current_time() - started < 5


async def test_a_peer_that_leaves_cancels_what_it_waits_for() -> None:
    runner, _ = make_runner()
    reply = RecordingReply()
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        session = runner.session()
        session.admit(1, "svc.sleep", meta(), 30, ResponseMode.RESPONSE, reply)
        await anyio.sleep(0.05)
        assert len(session) == 1
        session.close()
        with anyio.fail_after(5):
            await reply.closed.wait()
        assert len(session) == 0
    assert reply.sent == [("close", None)]  # nobody is there to answer


async def test_a_stream_sends_items_then_end() -> None:
    reply = RecordingReply()
    await run(reply, "svc.count", 3, ResponseMode.STREAM)
    assert reply.sent == [("item", 0), ("item", 1), ("item", 2), ("end", None), ("close", None)]


async def test_max_inflight_calls_and_drain_refuse_with_unavailable() -> None:
    runner, _ = make_runner(jesus.Limits(max_inflight_calls=2))
    replies = [RecordingReply() for _ in range(4)]
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        session = runner.session()
        for i, reply in enumerate(replies[:3]):
            session.admit(i, "svc.sleep", meta(f"c{i}"), 0.2, ResponseMode.RESPONSE, reply)
        assert replies[2].sent == [("error", "UNAVAILABLE"), ("close", None)]
        draining = runner.drain()
        tg.start_soon(lambda: draining)
        await anyio.lowlevel.checkpoint()
        session.admit(9, "svc.double", meta(), 1, ResponseMode.RESPONSE, replies[3])
        assert replies[3].sent == [("error", "UNAVAILABLE"), ("close", None)]
        with anyio.fail_after(5):
            await replies[0].closed.wait()
            await replies[1].closed.wait()
    assert replies[0].sent == [("result", "slept"), ("close", None)]


async def test_a_flood_of_refused_no_response_calls_is_counted_not_logged_each(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="jesus.server")
    runner, _ = make_runner()
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        session = runner.session()
        for i in range(500):
            session.admit(
                i, "svc.nope", meta(f"c{i}"), None, ResponseMode.NO_RESPONSE, RecordingReply()
            )
        tg.cancel_scope.cancel()
    assert runner.refused["UNKNOWN_METHOD"] == 500
    logged = [r for r in caplog.records if "refused a noResponse call" in r.getMessage()]
    assert len(logged) == 1  # the next one waits a second, and carries the totals


async def test_a_call_cancelled_or_drained_in_the_tick_it_was_admitted() -> None:
    """On every backend a call is the runner's from admission on, before its task starts."""
    runner, _ = make_runner()
    cancelled, drained = RecordingReply(), RecordingReply()
    async with anyio.create_task_group() as tg:
        runner.bind(tg)
        session = runner.session()
        session.admit(1, "svc.sleep", meta("a"), 0.2, ResponseMode.RESPONSE, cancelled)
        session.cancel(1)  # same tick: the handler must not run to its end
        session.admit(2, "svc.sleep", meta("b"), 0.2, ResponseMode.RESPONSE, drained)
        with anyio.fail_after(5):
            await runner.drain()  # same tick: it must wait for call 2
        assert drained.sent == [("result", "slept"), ("close", None)]
        await cancelled.closed.wait()
    assert cancelled.sent == [("close", None)]
