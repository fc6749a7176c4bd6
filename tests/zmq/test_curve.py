"""CURVE on the zmq channel: a node with sealing credentials serves zmq under CURVE with a key
its certificate vouches for, and admits only clients whose certificate the same CA signed.
What travels is unreadable; a client without keys, with an untrusted certificate or facing a
wrong server key is refused, and the server stays up for good clients."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
from zmq.utils import z85

import jesus
import zmq
from jesus.transport.keys import TransportKeys
from jesus_zmq.addresses import endpoint_of, server_key, zmq_address
from jesus_zmq.curve import serve_curve, zap
from tests.helpers import wait_until
from tests.security.conftest import Pki
from tests.zmq.raw import HELLO, receive_all

pytestmark = pytest.mark.anyio
SECRET = "the combination is 31-41-59"


def vault(seen: list[Any] | None = None, sealed: bool = True) -> jesus.Service:
    svc = jesus.Service("vault", channel="zmq+msgpack")

    @svc.method()
    async def whoami(data: Any) -> list[Any]:
        caller = jesus.current_caller()
        assert caller is not None
        return [caller.name, caller.proof]

    @svc.method()
    async def reveal(data: Any) -> str:
        return f"{data}: {SECRET}"

    @svc.method(allow=["billing"])
    async def guarded(data: Any) -> str:
        return "welcome"

    if sealed:

        @svc.method(seal="encrypt")
        async def secret(data: Any) -> list[Any]:
            caller = jesus.current_caller()
            assert caller is not None
            return [data, caller.name, caller.proof]

    @svc.method(mode="ack")
    async def record(data: Any) -> None:
        if seen is not None:
            seen.append(data)

    @svc.method(mode="noResponse")
    async def fire(data: Any) -> None:
        if seen is not None:
            seen.append(data)

    @svc.method(mode="stream")
    async def count(data: int) -> AsyncIterator[int]:
        for i in range(data):
            yield i

    return svc


@asynccontextmanager
async def keyed(
    registry: str, pki: Pki, client: str | None = "billing", seen: list[Any] | None = None
) -> AsyncIterator[tuple[jesus.Node, jesus.Client]]:
    """The vault served with sealing credentials, and a client with `client`'s (or none)."""
    creds = {} if client is None else {"sealing": pki.creds(client)}
    async with (
        jesus.serve(vault(seen), registry=registry, sealing=pki.creds("vault")) as node,
        jesus.Client(registry, **creds) as caller,
    ):
        yield node, caller


async def point_to(node: jesus.Node, endpoint: str, service: str = "vault") -> None:
    """Make the registry send `service`'s calls to `endpoint` (a lying registry)."""
    record = node.records[0]
    backend = node.client.resolver.backend
    forged = dataclasses.replace(
        record, service=service, instance_id="forged", endpoints={"zmq": endpoint}
    )
    await backend.register(forged, 30)
    if record.service == service:
        await backend.deregister(record.service, record.instance_id)


async def still_serving(registry: str, pki: Pki) -> None:
    async with jesus.Client(registry, sealing=pki.creds("billing")) as fresh:
        assert await fresh.call("vault.whoami") == ["billing", "curve"]


async def test_a_keyed_node_serves_zmq_under_curve_in_every_mode(registry: str, pki: Pki) -> None:
    seen: list[Any] = []
    async with keyed(registry, pki, seen=seen) as (node, client):
        endpoint = node.endpoints["zmq"]
        assert server_key(endpoint) == TransportKeys(pki.creds("vault")).public
        assert await client.call("vault.whoami") == ["billing", "curve"]  # proven, by CURVE
        assert await client.call("vault.guarded") == "welcome"  # allow= holds on that name
        assert await client.call("vault.secret", 7) == [7, "billing", "seal"]
        assert await client.call("vault.record", 1, mode="ack") is None
        await client.call("vault.fire", 2, mode="noResponse")
        assert [i async for i in client.stream("vault.count", 5)] == [0, 1, 2, 3, 4]
        await wait_until(lambda: seen == [1, 2])
        async with jesus.Client(registry, sealing=pki.creds("stranger")) as stranger:
            assert await stranger.call("vault.whoami") == ["stranger", "curve"]
            with pytest.raises(jesus.PermissionDenied, match="'stranger' may not call"):
                await stranger.call("vault.guarded")


def test_the_key_pair_comes_from_the_certificate_key(pki: Pki) -> None:
    one, again, other = (TransportKeys(pki.creds(n)) for n in ("vault", "vault", "billing"))
    assert one.public == again.public and len(one.public) == 32
    assert one.public != other.public
    assert zmq.curve_public(z85.encode(one.secret)) == z85.encode(one.public)
    assert TransportKeys.of(jesus.Credentials.load(ca=pki.folder / "ca.pem")) is None


async def relay(
    target: str, recorded: bytearray, task_group: anyio.abc.TaskGroup
) -> tuple[str, int]:
    """A TCP relay in front of `target` (a libzmq tcp:// address) that records the bytes."""
    parts = urlsplit(target)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")

    async def pipe(source: Any, sink: Any) -> None:
        async for chunk in source:
            recorded.extend(chunk)
            await sink.send(chunk)

    async def handle(inbound: Any) -> None:
        assert parts.hostname is not None and parts.port is not None
        async with (
            inbound,
            await anyio.connect_tcp(parts.hostname, parts.port) as outbound,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(pipe, inbound, outbound)
            await pipe(outbound, inbound)
            tg.cancel_scope.cancel()

    task_group.start_soon(listener.serve, handle)
    host, port = listener.extra(anyio.abc.SocketAttribute.local_address)[:2]
    return host, port


@pytest.mark.parametrize("curve", [True, False])
async def test_what_travels_is_unreadable(registry: str, pki: Pki, curve: bool) -> None:
    """Through a relay that records every byte: under CURVE neither the request nor the answer
    shows; the same calls without credentials (the control) show both."""
    recorded = bytearray()
    serve_creds = {"sealing": pki.creds("vault")} if curve else {}
    async with (
        jesus.serve(vault(sealed=curve), registry=registry, **serve_creds) as node,
        anyio.create_task_group() as tg,
    ):
        endpoint = node.endpoints["zmq"]
        host, port = await relay(zmq_address(endpoint), recorded, tg)
        key = server_key(endpoint)
        await point_to(node, endpoint_of(host, port, key))
        client_creds = {"sealing": pki.creds("billing")} if curve else {}
        async with jesus.Client(registry, **client_creds) as client:
            assert await client.call("vault.reveal", "open sesame") == f"open sesame: {SECRET}"
        tg.cancel_scope.cancel()
    assert recorded  # the calls went through the relay
    shows = (b"open sesame" in recorded, SECRET.encode() in recorded)
    assert shows == ((False, False) if curve else (True, True))


async def test_a_client_without_keys_is_refused(registry: str, pki: Pki) -> None:
    async with keyed(registry, pki, client=None) as (node, plain):
        with pytest.raises(jesus.ConfigurationError, match="speaks CURVE: this client needs"):
            await plain.call("vault.whoami")
        # A peer that does not speak CURVE at all: libzmq ends its handshake, nothing reaches
        # the server.
        sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(zmq_address(node.endpoints["zmq"]))
            sock.send(HELLO)
            assert await receive_all(sock, 0.5) == []
        finally:
            sock.close(linger=0)
        server: Any = node.servers["zmq"]
        assert server.peers == 0
        await still_serving(registry, pki)


async def test_a_curve_peer_without_a_certificate_is_refused(registry: str, pki: Pki) -> None:
    """CURVE with a key of its own but no proof of whose it is: ERROR PERMISSION_DENIED."""
    async with keyed(registry, pki) as (node, _):
        public, secret = zmq.curve_keypair()
        sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.CURVE_SERVERKEY, server_key(node.endpoints["zmq"]))
            sock.setsockopt(zmq.CURVE_PUBLICKEY, public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
            sock.connect(zmq_address(node.endpoints["zmq"]))
            sock.send(HELLO)
            answers = [b"".join(m) for m in await receive_all(sock, 0.5)]
        finally:
            sock.close(linger=0)
        assert len(answers) == 1 and b"PERMISSION_DENIED" in answers[0]
        assert b"no proof" in answers[0]
        assert node.servers["zmq"].peers == 0  # type: ignore[attr-defined]
        await still_serving(registry, pki)


async def test_a_certificate_of_another_ca_is_refused(registry: str, pki: Pki) -> None:
    async with (
        keyed(registry, pki) as (_, _client),
        jesus.Client(registry, sealing=pki.impostor("billing")) as impostor,
    ):
        with pytest.raises(jesus.Unavailable, match="does not trust this client"):
            await impostor.call("vault.whoami", timeout=5)
        await still_serving(registry, pki)


async def test_a_wrong_server_key_is_refused(registry: str, pki: Pki) -> None:
    """The registry names a key the server does not hold: the CURVE handshake fails."""
    async with keyed(registry, pki) as (node, client):
        endpoint = urlsplit(node.endpoints["zmq"])
        assert endpoint.hostname is not None and endpoint.port is not None
        other = TransportKeys(pki.creds("stranger")).public
        await point_to(node, endpoint_of(endpoint.hostname, endpoint.port, other))
        with pytest.raises(jesus.Unavailable, match="does not hold the key its endpoint names"):
            await client.call("vault.whoami", timeout=5)
        await point_to(node, node.endpoints["zmq"])
        await still_serving(registry, pki)


async def test_a_server_whose_certificate_another_ca_signed_is_refused(
    registry: str, pki: Pki
) -> None:
    """The server's key is vouched for by a certificate the client's CA did not sign: the
    client reads nothing from it."""
    async with (
        jesus.serve(vault(), registry=registry, sealing=pki.impostor("vault")) as node,
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        with pytest.raises(jesus.Unavailable, match="did not prove its CURVE key: certificate"):
            await client.call("vault.whoami", timeout=5)
        # It trusted billing: each connection the client tried (a retry makes two) is a peer
        # until the server finds it closed.
        assert node.servers["zmq"].peers >= 1  # type: ignore[attr-defined]


async def test_a_server_proving_another_name_is_refused(registry: str, pki: Pki) -> None:
    """The registry sends calls to "billing" to the vault's endpoint: its certificate says
    vault, so the client refuses to call billing there."""
    async with keyed(registry, pki) as (node, client):
        await point_to(node, node.endpoints["zmq"], service="billing")
        with pytest.raises(jesus.Unavailable, match=r"proves itself 'vault'.*not 'billing'"):
            await client.call("billing.whoami", timeout=5)
        assert await client.call("vault.whoami") == ["billing", "curve"]


async def test_tls_credentials_make_zmq_protected(registry: str, pki: Pki) -> None:
    """Given TLS, serve() refuses transports that carry no protection; CURVE is one."""
    async with (
        jesus.serve(vault(), registry=registry, tls=pki.creds("vault")) as node,
        jesus.Client(registry, tls=pki.creds("billing")) as client,
    ):
        assert server_key(node.endpoints["zmq"]) is not None
        assert await client.call("vault.whoami") == ["billing", "curve"]


async def test_events_reach_keyed_listeners(registry: str, pki: Pki) -> None:
    seen: list[Any] = []
    audit = jesus.Service("vault", channel="zmq+msgpack")

    @audit.listener("user.*", channel="zmq+msgpack")
    async def on_user(data: Any) -> None:
        seen.append([data, jesus.current_caller().name])  # type: ignore[union-attr]

    async with (
        jesus.serve(audit, registry=registry, sealing=pki.creds("vault")),
        jesus.Client(registry, sealing=pki.creds("billing")) as client,
    ):
        assert await client.emit("user.created", {"id": 1}, mode="ack") == ["vault"]
        await client.emit("user.deleted", {"id": 2})
        await wait_until(lambda: len(seen) == 2)
    assert seen == [[{"id": 1}, "billing"], [{"id": 2}, "billing"]]


def test_a_curve_server_can_follow_the_last_one_at_once(pki: Pki) -> None:
    """The ZAP handler the CURVE servers of a process share stays up between them: one
    stopped and started again at once could not bind its inproc address (libzmq frees it in
    the background)."""
    keys = TransportKeys(pki.creds("vault"))
    for _ in range(30):
        sock: zmq.Socket[Any] = zmq.Context.instance().socket(zmq.ROUTER)
        domain = serve_curve(sock, keys)
        sock.bind_to_random_port("tcp://127.0.0.1")
        sock.close(linger=0)
        zap.close(domain)
