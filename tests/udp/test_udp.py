"""The udp channel: modes, limits, hostile datagrams, and loss."""

from __future__ import annotations

import itertools
import json
import os
import random
from collections import Counter
from typing import Any

import anyio
import pytest
import zstandard

import jesus
from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.identity import NoCompression
from jesus.compression.zstd import ZstdCompression
from jesus.messages import ResponseMode
from jesus.payload import HEAVY
from jesus.protocol.datagram import decode_datagram, encode_datagram
from jesus.protocol.frames import FrameType
from jesus.registry.embedded import EmbeddedRegistry
from jesus.registry.resolver import Resolver
from jesus_udp.server import MAX_HEAVY_DECODES
from tests.helpers import wait_until
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio


def udp_calc(channel: str = "udp+msgpack") -> tuple[jesus.Service, dict[str, Any]]:
    svc, state = calculator(channel)
    del svc.methods["count"]  # streams need a stream channel
    state["runs"] = Counter()

    @svc.method(mode="ack", request={"type": "object", "required": ["id"]})
    async def once_ack(data: dict[str, Any]) -> None:
        state["runs"][("ack", data["id"])] += 1

    @svc.method(request={"type": "object", "required": ["id"]})
    async def once(data: dict[str, Any]) -> Any:
        state["runs"][("response", data["id"])] += 1
        return data["id"]

    return svc, state


@pytest.mark.parametrize("channel", ["udp+msgpack", "udp+json+zstd"])
async def test_modes_over_udp(running: Any, channel: str) -> None:
    svc, state = udp_calc(channel)
    async with running(svc) as (node, client):
        assert node.endpoints["udp"].startswith("udp://127.0.0.1:")
        assert await client.call("calc.add", {"a": 2, "b": 3}) == 5
        assert await client.call("calc.record", {"n": 1}) is None
        await wait_until(lambda: state["acked"] == [{"n": 1}])  # ack: accepted, runs after
        await client.notify("calc.fire", {"n": 2})
        await wait_until(lambda: state["notified"])
        with pytest.raises(jesus.InvalidRequest):
            await client.call("calc.add", {"a": "x", "b": 1})
        with pytest.raises(jesus.RemoteFailure, match="kaput"):
            await client.call("calc.boom")
        with pytest.raises(jesus.UnknownMethod):
            await client.call("calc.nope")


async def test_a_large_compressible_message_fits_and_an_incompressible_one_is_refused(
    running: Any,
) -> None:
    svc, _ = udp_calc("udp+msgpack+zstd")
    async with running(svc) as (_, client):
        text = "log line " * 5000  # 45 KB, compresses far below the datagram size
        assert await client.call("calc.echo", text) == text
        with pytest.raises(jesus.TooLarge, match="use a stream channel"):
            await client.call("calc.echo", os.urandom(20_000).hex())


async def test_deadline_over_udp(running: Any) -> None:
    svc, state = udp_calc()
    async with running(svc) as (_, client):
        with pytest.raises(jesus.DeadlineExceeded):
            await client.call("calc.sleep", 5, timeout=0.3)
        await wait_until(lambda: state["cancelled"] > 0)


async def test_stream_methods_are_refused_on_udp(registry: str) -> None:
    svc = jesus.Service("s", channel="udp+msgpack")

    @svc.method(mode="stream")
    async def items(data: Any) -> Any:
        yield 1

    with pytest.raises(
        jesus.ConfigurationError, match=r"cannot carry; channels that can: http, tcp, unix"
    ):
        async with jesus.serve(svc, registry=registry):
            pass


def request_datagram(
    message_id: int,
    envelope: Any,
    mode: ResponseMode = ResponseMode.RESPONSE,
    compression: Any = None,
    payload: bytes | None = None,
) -> bytes:
    codec = MsgpackCodec()
    body = payload if payload is not None else codec.encode(envelope)
    return encode_datagram(
        FrameType.REQUEST,
        message_id,
        codec,
        compression or NoCompression(),
        body,
        mode=mode,
        compressed=compression is not None,
    )


async def test_garbage_datagrams_are_counted_and_the_server_keeps_serving(running: Any) -> None:
    svc, _ = udp_calc()
    async with running(svc) as (node, client):
        host, port = node.endpoints["udp"].removeprefix("udp://").rsplit(":", 1)
        good = request_datagram(1, ["calc.add", {"c": "x"}, {"a": 1, "b": 2}])
        bomb = zstandard.ZstdCompressor().compress(b"\0" * (100 * 1024 * 1024))
        hostile = [
            os.urandom(200),
            b"\x00",
            good[:10],  # truncated header
            b"XX" + good[2:],  # bad magic
            good[:2] + b"\x09" + good[3:],  # unknown version
            good[:3] + b"\x7e" + good[4:],  # unknown type
            request_datagram(2, None, compression=ZstdCompression(), payload=bomb),
            request_datagram(3, None, payload=b"\xc1\xc1"),  # undecodable envelope
            encode_datagram(
                FrameType.REQUEST,
                4,
                type("C", (), {"name": "yaml"})(),
                NoCompression(),
                b"x",
                mode=ResponseMode.RESPONSE,
            ),
            os.urandom(9000),  # over max_datagram_size
        ]
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as raw:
            for datagram in hostile:
                await raw.sendto(datagram, host, int(port))
            await raw.sendto(good, host, int(port))
            answers: dict[int, Any] = {}
            with anyio.fail_after(5):
                while 1 not in answers:
                    data, _ = await raw.receive()
                    dg = decode_datagram(data)
                    answers[dg.message_id] = dg
        server = node.servers["udp"]
        await wait_until(lambda: sum(server.stats.values()) == len(hostile))
        stats = server.stats
        assert stats["garbage"] == 6 and stats["too_large"] == 1 and stats["unknown_codec"] == 1
        assert stats["rejected"] == 2  # the bomb and the undecodable envelope
        assert answers[1].type == FrameType.RESPONSE
        assert MsgpackCodec().decode(answers[1].payload) == 3
        assert await client.call("calc.add", {"a": 20, "b": 22}) == 42


async def test_errors_for_bad_requests_come_back_typed(running: Any) -> None:
    svc, _ = udp_calc()
    async with running(svc) as (node, _client):
        host, port = node.endpoints["udp"].removeprefix("udp://").rsplit(":", 1)
        bomb = zstandard.ZstdCompressor().compress(b"\0" * (100 * 1024 * 1024))
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as raw:
            await raw.sendto(
                request_datagram(7, None, compression=ZstdCompression(), payload=bomb),
                host,
                int(port),
            )
            await raw.sendto(
                request_datagram(8, ["calc.count", {"c": "x"}, {}], mode=ResponseMode.STREAM),
                host,
                int(port),
            )
            codes = {}
            with anyio.fail_after(5):
                while len(codes) < 2:
                    dg = decode_datagram((await raw.receive())[0])
                    codes[dg.message_id] = json.loads(dg.payload)["code"]
        assert codes == {7: "TOO_LARGE", 8: "INVALID_REQUEST"}


class LossyRelay:
    """Forwards datagrams between clients and a server, dropping a share each way."""

    def __init__(self, target: tuple[str, int], loss: float, seed: int) -> None:
        self.target = target
        self.loss = loss
        self.random = random.Random(seed)
        self.dropped = 0
        self.forwarded = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as front,
            await anyio.create_udp_socket(local_host="127.0.0.1") as back,
        ):
            self.address = front.extra(anyio.abc.SocketAttribute.local_address)
            client: list[Any] = []
            task_status.started()

            async def upstream() -> None:
                async for data, addr in front:
                    client[:] = [addr]
                    await self.on_request(data, addr)
                    await self._forward(back, data, self.target)

            async def downstream() -> None:
                async for data, _ in back:
                    if client:
                        await self._forward(front, data, client[0])

            async with anyio.create_task_group() as tg:
                tg.start_soon(upstream)
                tg.start_soon(downstream)

    async def on_request(self, data: bytes, client: Any) -> None:
        """Called with each request before it is forwarded."""

    async def _forward(self, socket: Any, data: bytes, to: Any) -> None:
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1
        await socket.sendto(data, to[0], to[1])


class RelayedRegistry(EmbeddedRegistry):
    """Points callers' udp endpoints at the relay, as a network in between would."""

    def __init__(self, url: str, relay: str) -> None:
        super().__init__(url)
        self.relay = relay

    async def list_instances(self, service: str | None = None) -> list[Any]:
        import dataclasses

        found = await super().list_instances(service)
        return [dataclasses.replace(r, endpoints={**r.endpoints, "udp": self.relay}) for r in found]


async def test_ack_and_response_survive_loss_and_run_exactly_once(registry: str) -> None:
    svc, state = udp_calc()
    limits = jesus.Limits(retry_initial=0.02, retry_max=0.1)
    async with jesus.serve(svc, registry=registry, limits=limits) as node:
        host, port = node.endpoints["udp"].removeprefix("udp://").rsplit(":", 1)
        relay = LossyRelay((host, int(port)), loss=0.3, seed=7)
        async with anyio.create_task_group() as tg:
            await tg.start(relay.run)
            relayed = f"udp://127.0.0.1:{relay.address[1]}"
            resolver = Resolver(RelayedRegistry(registry, relayed))
            async with jesus.Client(limits=limits, resolver=resolver, timeout=20) as client:

                async def one(i: int) -> None:
                    assert await client.call("calc.once_ack", {"id": i}) is None
                    assert await client.call("calc.once", {"id": i}) == i

                async with anyio.create_task_group() as calls:
                    for i in range(60):
                        calls.start_soon(one, i)
            tg.cancel_scope.cancel()
    assert relay.dropped > 20  # loss really happened
    expected = {("ack", i): 1 for i in range(60)} | {("response", i): 1 for i in range(60)}
    assert dict(state["runs"]) == expected  # every handler ran, and exactly once
    assert node.servers["udp"].stats["duplicate"] > 0  # retransmissions were dropped


class ForgingRelay(LossyRelay):
    """Forwards each request to the server, and first answers it itself, with the right
    message id, from a socket of its own: what a peer on the path, or one that learned an id,
    would try."""

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(target, loss=0.0, seed=0)
        self.forged = 0

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as self.forger:
            await super().run(task_status=task_status)

    async def on_request(self, data: bytes, client: Any) -> None:
        dg = decode_datagram(data)
        codec = MsgpackCodec()
        lie = encode_datagram(
            FrameType.RESPONSE, dg.message_id, codec, NoCompression(), codec.encode(-1)
        )
        await self.forger.sendto(lie, client[0], client[1])
        self.forged += 1


async def test_answers_from_another_address_are_not_believed(registry: str) -> None:
    svc, _ = udp_calc()
    async with jesus.serve(svc, registry=registry) as node:
        host, port = node.endpoints["udp"].removeprefix("udp://").rsplit(":", 1)
        relay = ForgingRelay((host, int(port)))
        async with anyio.create_task_group() as tg:
            await tg.start(relay.run)
            resolver = Resolver(RelayedRegistry(registry, f"udp://127.0.0.1:{relay.address[1]}"))
            async with jesus.Client(resolver=resolver) as client:
                for i in range(5):
                    assert await client.call("calc.add", {"a": i, "b": 1}) == i + 1
                (udp,) = client._transports.values()
                assert udp.wrong_source >= 5  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()
    assert relay.forged >= 5


async def test_message_ids_are_unpredictable(registry: str) -> None:
    svc, _ = udp_calc()
    async with jesus.serve(svc, registry=registry):
        seen: list[int] = []
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as fake:
            fake_port = fake.extra(anyio.abc.SocketAttribute.local_address)[1]
            resolver = Resolver(RelayedRegistry(registry, f"udp://127.0.0.1:{fake_port}"))
            async with jesus.Client(resolver=resolver) as client:
                for _ in range(20):
                    await client.notify("calc.fire", {"n": 1})
                with anyio.fail_after(5):
                    while len(seen) < 20:
                        seen.append(decode_datagram((await fake.receive())[0]).message_id)
    gaps = {b - a for a, b in itertools.pairwise(seen)}
    assert len(gaps) > 15 and 1 not in gaps  # not a counter


async def test_datagrams_that_inflate_past_the_inline_limit_are_decoded_off_the_loop(
    running: Any,
) -> None:
    """Each inflates past HEAVY (a worker thread decodes it); more of them than the server
    decodes at once are dropped at first, as a full socket would, and come again."""
    svc, _ = udp_calc("udp+msgpack+zstd")
    text = "x" * (HEAVY + 50_000)
    async with running(svc) as (_, client):
        answers: list[Any] = []

        async def one() -> None:
            answers.append(await client.call("calc.echo", text, timeout=20))

        async with anyio.create_task_group() as tg:
            for _ in range(3 * MAX_HEAVY_DECODES):
                tg.start_soon(one)
        assert answers == [text] * (3 * MAX_HEAVY_DECODES)
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3


async def test_a_burst_from_two_senders_is_answered_each_to_its_own(running: Any) -> None:
    """Datagrams queued in the socket are taken several at a time (transport/feed.py):
    each keeps its own sender, none is lost or taken twice."""
    svc, _ = udp_calc()
    async with running(svc) as (node, _client):
        host, port = node.endpoints["udp"].removeprefix("udp://").rsplit(":", 1)
        count = 100
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as first,
            await anyio.create_udp_socket(local_host="127.0.0.1") as second,
        ):
            for i in range(count):
                for n, sock in enumerate((first, second)):
                    body = ["calc.add", {"c": f"burst-{n}-{i}"}, {"a": i, "b": 1000 * n}]
                    await sock.sendto(request_datagram(i, body), host, int(port))
            for n, sock in enumerate((first, second)):
                sums: dict[int, int] = {}
                with anyio.fail_after(10):
                    while len(sums) < count:
                        data, _ = await sock.receive()
                        dg = decode_datagram(data)
                        sums[dg.message_id] = MsgpackCodec().decode(dg.payload)
                assert sums == {i: i + 1000 * n for i in range(count)}
