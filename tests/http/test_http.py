"""The http channel, through the jesus client and through curl, as any HTTP user would."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from typing import Any

import anyio
import pytest
import zstandard

import jesus
from tests.helpers import wait_until
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio
CURL = shutil.which("curl") or "curl"


def http_calc(channel: str = "http+json") -> tuple[jesus.Service, dict[str, Any]]:
    svc, state = calculator(channel)
    state["gate"] = anyio.Event()

    @svc.method(mode="noResponse")
    async def wait_gate(data: Any) -> None:
        await state["gate"].wait()
        state["notified"].append("gate passed")

    return svc, state


async def curl(*args: str, check: bool = True) -> tuple[int, dict[str, str], bytes]:
    """Run curl; returns (status, headers, body)."""
    result = await anyio.run_process([CURL, "-s", "-S", "-i", *args], check=check)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
    }
    return status, headers, body


JSON = ("-H", "content-type: application/json")


@pytest.mark.parametrize("channel", ["http+json", "http+msgpack+zstd", "http+json+gzip"])
async def test_all_modes_through_the_client(running: Any, channel: str) -> None:
    svc, state = http_calc(channel)
    async with running(svc) as (node, client):
        assert node.endpoints["http"].startswith("http://127.0.0.1:")
        assert await client.call("calc.add", {"a": 2, "b": 3}) == 5
        big = {"blob": "jesus " * 20_000}
        assert await client.call("calc.echo", big) == big
        assert await client.call("calc.record", {"n": 1}) is None
        await wait_until(lambda: state["acked"] == [{"n": 1}])  # ack: accepted, runs after
        await client.notify("calc.fire", {"n": 2})
        await wait_until(lambda: {"n": 2} in state["notified"])
        assert [i async for i in client.stream("calc.count", {"n": 50})] == list(range(50))
        with pytest.raises(jesus.RemoteFailure, match="stream broke midway"):
            async for _ in client.stream("calc.count", {"n": 2, "fail": True}):
                pass
        with pytest.raises(jesus.UnknownMethod):
            await client.call("calc.nope")
        with pytest.raises(jesus.RemoteFailure, match="kaput"):
            await client.call("calc.boom")
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("calc.sleep", 5, timeout=0.3)
        await wait_until(lambda: state["cancelled"] > 0)
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2


async def test_curl_json_call_and_errors(running: Any) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, client):
        url = node.endpoints["http"]
        status, headers, body = await curl(*JSON, "-d", '{"a": 1, "b": 41}', f"{url}/calc/add")
        assert (status, json.loads(body)) == (200, 42)
        assert headers["content-type"] == "application/json" and headers["x-jesus-corrid"]

        status, headers, body = await curl(
            *JSON, "-H", "x-jesus-corrid: trace-me", "-d", '{"a": "x", "b": 1}', f"{url}/calc/add"
        )
        error = json.loads(body)["error"]
        assert (status, error["code"], error["corrid"]) == (400, "INVALID_REQUEST", "trace-me")
        assert headers["x-jesus-error"] == "INVALID_REQUEST" and any(
            "/a" in d for d in error["details"]
        )

        status, _, body = await curl(f"{url}/no/where/at/all")
        assert status == 404 and json.loads(body)["error"]["code"] == "UNKNOWN_METHOD"
        status, _, body = await curl(*JSON, "-d", "{}", f"{url}/calc/missing")
        assert status == 404 and json.loads(body)["error"]["code"] == "UNKNOWN_METHOD"
        status, headers, _ = await curl(f"{url}/calc/add")
        assert status == 405 and headers["allow"] == "POST"
        status, _, body = await curl(
            "-H", "content-type: text/plain", "-d", "hi", f"{url}/calc/add"
        )
        assert status == 415 and "application/json" in json.loads(body)["error"]["message"]
        status, _, body = await curl(
            *JSON, "-H", "content-encoding: br", "-d", "{}", f"{url}/calc/add"
        )
        assert status == 415 and "'br' is not supported" in json.loads(body)["error"]["message"]
        status, _, body = await curl(
            *JSON, "-H", "Content-Encoding: Identity", "-d", '{"a": 1, "b": 1}', f"{url}/calc/add"
        )
        assert status == 200 and json.loads(body) == 2
        status, _, body = await curl(*JSON, "-d", "{not json", f"{url}/calc/add")
        assert status == 400 and json.loads(body)["error"]["code"] == "PROTOCOL_ERROR"
        status, _, body = await curl(*JSON, "-d", "{}", f"{url}/calc/boom")
        assert status == 500 and "kaput" in json.loads(body)["error"]["message"]
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3


async def test_curl_compression_both_ways(running: Any, tmp_path: Any) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        url = node.endpoints["http"]
        text = {"text": "compress me " * 1000}
        (tmp_path / "body.gz").write_bytes(gzip.compress(json.dumps(text).encode()))
        (tmp_path / "body.zst").write_bytes(
            zstandard.ZstdCompressor().compress(json.dumps(text).encode())
        )
        for name, encoding in (("body.gz", "gzip"), ("body.zst", "zstd")):
            status, headers, body = await curl(
                *JSON,
                "-H",
                f"content-encoding: {encoding}",
                "-H",
                f"accept-encoding: {encoding}",
                "--data-binary",
                f"@{tmp_path / name}",
                f"{url}/calc/echo",
            )
            assert status == 200 and headers["content-encoding"] == encoding
            raw = (
                gzip.decompress(body)
                if encoding == "gzip"
                else zstandard.ZstdDecompressor().decompressobj().decompress(body)
            )
            assert json.loads(raw) == text
        # curl decodes for the user with --compressed
        status, _, body = await curl(
            "--compressed", *JSON, "-d", json.dumps(text), f"{url}/calc/echo"
        )
        assert status == 200 and json.loads(body) == text


async def test_curl_stream_item_by_item(running: Any) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        url = node.endpoints["http"]
        status, headers, body = await curl("-N", *JSON, "-d", '{"n": 3}', f"{url}/calc/count")
        assert status == 200 and headers["content-type"] == "application/x-ndjson"
        assert [json.loads(line) for line in body.splitlines()] == [
            {"item": 0},
            {"item": 1},
            {"item": 2},
        ]
        _, _, body = await curl("-N", *JSON, "-d", '{"n": 2, "fail": true}', f"{url}/calc/count")
        lines = [json.loads(line) for line in body.splitlines()]
        assert lines[:2] == [{"item": 0}, {"item": 1}]
        assert lines[2]["error"]["code"] == "REMOTE_FAILURE"


async def test_modes_over_curl(running: Any) -> None:
    svc, state = http_calc()
    async with running(svc) as (node, _client):
        url = node.endpoints["http"]
        # noResponse: 202 comes back while the handler is still waiting on its gate
        status, _, body = await curl(*JSON, "-d", "{}", f"{url}/calc/wait_gate")
        assert status == 202 and json.loads(body)["accepted"] is True
        assert "gate passed" not in state["notified"]
        state["gate"].set()
        await wait_until(lambda: "gate passed" in state["notified"])
        # ack: 202 once accepted and validated
        status, _, _ = await curl(*JSON, "-d", '{"n": 7}', f"{url}/calc/record")
        assert status == 202
        await wait_until(lambda: {"n": 7} in state["acked"])


async def test_health_and_description(running: Any) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        url = node.endpoints["http"]
        status, _, body = await curl(f"{url}/health")
        assert (status, json.loads(body)) == (200, {"status": "ok", "services": ["calc"]})
        status, _, body = await curl(f"{url}/calc")
        described = json.loads(body)
        assert described["methods"]["add"]["request"]["required"] == ["a", "b"]
        assert described["methods"]["count"]["mode"] == "stream"
        status, _, body = await curl(f"{url}/")
        assert "calc" in json.loads(body)["services"]


async def test_limits_and_hostile_input(running: Any, tmp_path: Any) -> None:
    svc, _ = http_calc()
    limits = jesus.Limits(
        max_message_size=100_000,
        max_decompressed_size=1_000_000,
        max_header_size=4096,
        request_timeout=0.5,
    )
    async with running(svc, limits=limits) as (node, client):
        url = node.endpoints["http"]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        (tmp_path / "big.json").write_text(json.dumps("x" * 200_000))
        status, _, body = await curl(
            *JSON, "--data-binary", f"@{tmp_path / 'big.json'}", f"{url}/calc/echo"
        )
        assert status == 413 and json.loads(body)["error"]["code"] == "TOO_LARGE"
        bomb = gzip.compress(b" " * 50_000_000)
        assert len(bomb) < 100_000
        async with await anyio.connect_tcp(host, int(port)) as raw:
            await raw.send(
                b"POST /calc/echo HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                b"content-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(bomb) + bomb
            )
            reply = await raw.receive()
            assert reply.startswith(b"HTTP/1.1 413")
        status, _, _ = await curl(
            *JSON, "-H", "x-big: " + "y" * 8000, "-d", "{}", f"{url}/calc/echo"
        )
        assert status == 431
        for garbage in (
            b"\x16\x03\x01\x02\x00garbage\r\n\r\n",
            b"GET / HTTP/9.9 what\r\n\r\n",
            os.urandom(64) + b"\r\n\r\n",
        ):
            async with await anyio.connect_tcp(host, int(port)) as raw:
                await raw.send(garbage)
                reply = b""
                with anyio.fail_after(5):
                    try:
                        while True:
                            reply += await raw.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
                assert reply.startswith(b"HTTP/1.1 400"), reply[:80]
        # slowloris: a request that trickles in is cut off after request_timeout
        async with await anyio.connect_tcp(host, int(port)) as raw:
            started = anyio.current_time()
            await raw.send(b"POST /calc/echo HTTP/1.1\r\nhost: x\r\n")
            reply = b""
            with anyio.fail_after(5):
                try:
                    while True:
                        await raw.send(b"x-slow: 1\r\n")
                        with anyio.move_on_after(0.1):
                            reply += await raw.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
            assert reply.startswith(b"HTTP/1.1 408") and anyio.current_time() - started < 3
        assert await client.call("calc.add", {"a": 20, "b": 22}) == 42  # still serving


async def test_connection_limit(running: Any) -> None:
    svc, _ = http_calc()
    async with running(svc, limits=jesus.Limits(max_connections=3)) as (node, _client):
        url = node.endpoints["http"]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        held = [await anyio.connect_tcp(host, int(port)) for _ in range(3)]
        await anyio.sleep(0.1)
        status, _, body = await curl(*JSON, "-d", "{}", f"{url}/calc/echo")
        assert status == 503 and json.loads(body)["error"]["code"] == "UNAVAILABLE"
        for stream in held:
            await stream.aclose()
        await anyio.sleep(0.1)
        status, _, _ = await curl(*JSON, "-d", "{}", f"{url}/calc/echo")
        assert status == 200


async def test_a_client_that_leaves_cancels_the_handler(running: Any) -> None:
    svc, state = http_calc()
    async with running(svc) as (node, client):
        url = node.endpoints["http"]
        host, port = url.removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as raw:
            await raw.send(
                b"POST /calc/sleep HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n30"
            )
            await anyio.sleep(0.2)
        await wait_until(lambda: state["cancelled"] == 1)
        async for item in client.stream("calc.count", {"n": 100_000, "delay": 0.001}):
            if item == 3:
                break
        await wait_until(lambda: state["cancelled"] == 2)
        assert state["produced"] < 100_000


async def test_the_answer_codec_follows_accept_else_the_request(running: Any) -> None:
    """PROTOCOL.md, "The answer codec": no accept (or */*) answers in the request's codec."""
    import msgpack

    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        url = f"{node.endpoints['http']}/calc/add"
        body = msgpack.packb({"a": 2, "b": 3})
        sent = ("-H", "content-type: application/msgpack", "--data-binary", "@-")
        for accept, expected in [
            ("accept:", "application/msgpack"),  # curl sends no accept header at all
            ("accept: */*", "application/msgpack"),
            ("accept: text/html, application/json;q=0.9", "application/json"),
        ]:
            result = await anyio.run_process(
                [CURL, "-s", "-i", "-H", accept, *sent, url], input=body, check=True
            )
            head, _, payload = result.stdout.partition(b"\r\n\r\n")
            assert f"content-type: {expected}".encode() in head.lower(), (accept, head)
            decoded = msgpack.unpackb(payload) if "msgpack" in expected else json.loads(payload)
            assert decoded == 5


@pytest.mark.parametrize("deadline", ["9" * 400, "²", "-5"])
async def test_a_bad_deadline_header_is_answered_not_dropped(running: Any, deadline: str) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, client):
        status, _, body = await curl(
            *JSON,
            "-H",
            f"x-jesus-deadline-ms: {deadline}",
            "-d",
            '{"a": 1, "b": 2}',
            f"{node.endpoints['http']}/calc/add",
        )
        assert status == 400 and json.loads(body)["error"]["code"] == "INVALID_REQUEST"
        assert "meta.d" in json.loads(body)["error"]["message"]
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2


async def test_bare_line_breaks_do_not_keep_a_connection_from_its_idle_timeout(
    running: Any,
) -> None:
    svc, _ = http_calc()
    limits = jesus.Limits(idle_timeout=0.4, request_timeout=0.4)
    async with running(svc, limits=limits) as (node, client):
        host, port = node.endpoints["http"].removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as raw:
            started = anyio.current_time()
            with anyio.fail_after(5):
                try:
                    while True:
                        await raw.send(b"\r\n")
                        with anyio.move_on_after(0.1):
                            if not await raw.receive():
                                break
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                    pass
            assert anyio.current_time() - started < 3
        assert await client.call("calc.add", {"a": 1, "b": 1}) == 2


async def read_answers(raw: Any, want: int, timeout: float = 5) -> list[bytes]:
    """The status lines of the first `want` answers on a raw connection, in order (bodies are
    small JSON; a closed connection ends the list early)."""
    data = b""
    with anyio.fail_after(timeout):
        while data.count(b"HTTP/1.1 ") < want:
            try:
                data += await raw.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                break
    return [b"HTTP/1.1 " + part for part in data.split(b"HTTP/1.1 ")[1:]]


def post(path: str, body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return (
        f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{head}"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_pipelined_answers_stay_in_order_even_past_a_deadline(running: Any) -> None:
    """A call whose deadline has passed before it runs still gets its own answer, so the
    next request's answer is not taken for it."""
    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        host, port = node.endpoints["http"].removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as raw:
            await raw.send(
                post("/calc/add", b'{"a": 1, "b": 2}', "x-jesus-deadline-ms: 0")
                + post("/calc/echo", b'"second"')
            )
            first, second = await read_answers(raw, 2)
        # Past its deadline the call is answered 504, or (if it ran at once) 200 with 3.
        assert first.startswith(b"HTTP/1.1 504") or first.endswith(b"\r\n\r\n3"), first
        assert second.startswith(b"HTTP/1.1 200") and second.endswith(b'"second"'), second


async def test_connection_close_after_a_waiting_request_closes_at_once(running: Any) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        host, port = node.endpoints["http"].removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as raw:
            await raw.send(
                post("/calc/sleep", b"0.2")
                + b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
            )
            started = anyio.current_time()
            answers = await read_answers(raw, 3, timeout=3)  # only two come, then EOF
        assert [a[:12] for a in answers] == [b"HTTP/1.1 200", b"HTTP/1.1 200"]
        assert anyio.current_time() - started < 2  # not left open until idle_timeout


async def test_a_refusal_waits_for_the_answer_under_way(running: Any) -> None:
    svc, _ = http_calc()
    async with running(svc) as (node, _client):
        host, port = node.endpoints["http"].removeprefix("http://").rsplit(":", 1)
        async with await anyio.connect_tcp(host, int(port)) as raw:
            await raw.send(post("/calc/sleep", b"0.2"))
            await anyio.sleep(0.05)
            await raw.send(b"\x16\x03garbage that is no HTTP\r\n\r\n")
            answers = await read_answers(raw, 2)
        assert [a[:12] for a in answers] == [b"HTTP/1.1 200", b"HTTP/1.1 400"]


async def test_meta_that_would_add_headers_is_refused_before_it_is_sent(running: Any) -> None:
    """A userid (say, handed on from a tcp caller) with a CR LF in it would write headers of
    its own into the request; it is refused, and the connection serves the next call."""
    svc, _ = http_calc()

    @svc.method(response={"type": "string"})
    async def who(data: Any) -> str:
        meta = jesus.current_call()
        return f"{meta.userid if meta else None}|{meta.extra if meta else None}"

    async with running(svc) as (_, client):
        with pytest.raises(jesus.InvalidRequest, match="cannot travel over http") as refused:
            await client.call("calc.who", None, userid="ann\r\nx-jesus-from: vault")
        assert refused.value.corrid
        with pytest.raises(jesus.InvalidRequest):
            await client.call("calc.who", None, userid="José")  # not latin-1 safe either
        assert await client.call("calc.who", None, userid="ann") == "ann|None"


async def test_calls_in_turn_share_a_connection_and_outlive_its_idle_close(running: Any) -> None:
    """The client keeps a connection alive between calls, and one the server closed while it
    was idle is replaced without the caller noticing (the caller's address shows which
    connection a call came by)."""
    svc = jesus.Service("where", channel="http+json")

    @svc.method()
    async def address(data: Any) -> str:
        caller = jesus.current_caller()
        assert caller is not None
        return caller.address

    limits = jesus.Limits(idle_timeout=0.3, request_timeout=0.3)
    async with running(svc, limits=limits) as (_node, client):
        first = [await client.call("where.address") for _ in range(3)]
        assert len(set(first)) == 1 and first[0], first
        await anyio.sleep(1.0)  # the server closes the idle connection meanwhile
        again = [await client.call("where.address") for _ in range(3)]
        assert len(set(again)) == 1 and again[0] != first[0], (first, again)
