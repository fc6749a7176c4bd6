"""Sealed messages (`seal="sign"` / `seal="encrypt"`): they round-trip over every transport
and prove their caller; what travels is unreadable, unalterable and not replayable; a
registry that lies cannot downgrade a call or slip in a key; keys rotate under traffic."""

from __future__ import annotations

import base64
import dataclasses
import logging
import time
import types
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import msgpack
import pytest
from anyio.abc import SocketAttribute
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import jesus
from jesus.messages import Meta, ResponseMode
from jesus.registry.base import InstanceRecord
from jesus.registry.embedded import EmbeddedRegistry
from jesus.registry.resolver import Resolver
from jesus.sealing import envelope
from jesus.sealing import seal as seal_module
from jesus.sealing.identity import Signer
from jesus.sealing.keys import KeyRing
from jesus.sealing.seal import Opener, SealedCall, Sealer
from tests.helpers import wait_until
from tests.security.conftest import Pki

pytestmark = pytest.mark.anyio
CARD = "4111-1111-1111-1111 exp 04/29"  # what the caller must not leak
COMBINATION = "the combination is 31-41-59"  # what the vault must not leak
METHOD = "vault.secret"
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def vault(state: Counter[str], channel: str = "udp") -> jesus.Service:
    svc = jesus.Service("vault", channel=channel)

    def answer(data: Any) -> dict[str, Any]:
        caller = jesus.current_caller()
        assert caller is not None
        return {"echo": data, "secret": COMBINATION, "caller": [caller.name, caller.proof]}

    @svc.method(seal="encrypt", allow=["billing"])
    async def secret(data: Any) -> dict[str, Any]:
        state["secret"] += 1
        return answer(data)

    @svc.method(seal="sign")
    async def signed(data: Any) -> dict[str, Any]:
        state["signed"] += 1
        return answer(data)

    if channel != "udp":

        @svc.method(mode="stream", seal="encrypt")
        async def count(data: int) -> AsyncIterator[dict[str, Any]]:
            caller = jesus.current_caller()
            assert caller is not None
            for i in range(data):
                yield {"i": i, "caller": [caller.name, caller.proof]}

    return svc


def expected(data: Any) -> dict[str, Any]:
    return {"echo": data, "secret": COMBINATION, "caller": ["billing", "seal"]}


class LyingRegistry(EmbeddedRegistry):
    """The registry the callers read, with each record passed through `edit` (a registry
    that lies, or a network in between)."""

    def __init__(self, url: str, edit: Callable[[InstanceRecord], InstanceRecord]) -> None:
        super().__init__(url)
        self.edit = edit

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        return [self.edit(r) for r in await super().list_instances(service)]


def fooled(registry: str, creds: jesus.Credentials, edit: Callable[..., Any]) -> jesus.Client:
    return jesus.Client(resolver=Resolver(LyingRegistry(registry, edit)), tls=creds)


def unsealed(method: str) -> Callable[[InstanceRecord], InstanceRecord]:
    """An edit: the record says `method` is not sealed."""

    def edit(record: InstanceRecord) -> InstanceRecord:
        methods = dict(record.methods)
        methods[method] = dataclasses.replace(methods[method], seal=None)
        return dataclasses.replace(record, methods=methods)

    return edit


def publishing(seal: dict[str, Any]) -> Callable[[InstanceRecord], InstanceRecord]:
    """An edit: the record publishes `seal` as its sealing keys."""
    return lambda record: dataclasses.replace(record, seal=seal)


class Tap:
    """A udp relay between callers and one server that keeps a copy of every datagram."""

    def __init__(self, target: str, alter: Callable[[bytes], bytes] | None = None) -> None:
        host, port = target.removeprefix("udp://").rsplit(":", 1)
        self.target = (host, int(port))
        self.alter = alter  # what it does to each datagram on the way to the server
        self.up: list[bytes] = []  # caller to server
        self.down: list[bytes] = []  # server to caller
        self.endpoint = ""

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with (
            await anyio.create_udp_socket(local_host="127.0.0.1") as front,
            await anyio.create_udp_socket(local_host="127.0.0.1") as back,
        ):
            self.endpoint = f"udp://127.0.0.1:{front.extra(SocketAttribute.local_port)}"
            caller: list[Any] = []
            task_status.started()

            async def upstream() -> None:
                async for data, addr in front:
                    caller[:] = [addr]
                    self.up.append(data)
                    if self.alter is not None:
                        data = self.alter(data)
                    await back.sendto(data, *self.target)

            async def downstream() -> None:
                async for data, _ in back:
                    self.down.append(data)
                    if caller:
                        await front.sendto(data, caller[0][0], caller[0][1])

            async with anyio.create_task_group() as tg:
                tg.start_soon(upstream)
                tg.start_soon(downstream)


@asynccontextmanager
async def serving(
    registry: str, pki: Pki, channel: str = "udp", **kwargs: Any
) -> AsyncIterator[tuple[jesus.Node, Counter[str]]]:
    state: Counter[str] = Counter()
    creds = kwargs.pop("tls", None) or pki.creds("vault")
    async with jesus.serve(vault(state, channel), registry=registry, tls=creds, **kwargs) as node:
        yield node, state


def sealer_for(node: jesus.Node, creds: jesus.Credentials) -> tuple[Sealer, Any]:
    """A caller's Sealer and the key it seals to, checked from the node's published record."""
    sealer = Sealer(creds)
    record = node.records[0]
    return sealer, sealer.recipient(record.service, record.instance_id, record.seal)


def request_meta() -> Meta:
    return Meta(mode=ResponseMode.RESPONSE, sender="billing", userid="user-7", seal="encrypt")


PLAIN = msgpack.packb({"card": CARD})


MASKS = (0x01, 0x80, 0xFF)  # the low bit, the high bit, every bit


def flipped(blob: bytes, i: int, mask: int) -> bytes:
    altered = bytearray(blob)
    altered[i] ^= mask
    return bytes(altered)


def flips(blob: bytes) -> list[tuple[int, bytes]]:
    """Every copy of `blob` with one byte changed."""
    return [(i, flipped(blob, i, mask)) for i in range(len(blob)) for mask in MASKS]


# ---------------------------------------------------------------------- round trips


@pytest.mark.parametrize("channel", ["tcp", "udp", "http+json"])
async def test_sealed_calls_round_trip_and_prove_their_caller(
    registry: str, pki: Pki, channel: str
) -> None:
    """Encrypted and signed calls (and, where the transport streams, a stream) come back
    intact, and the handler knows its caller by the seal, over tcp, udp and http+json."""
    data = {"card": CARD, "items": [1, "two", None, True, 2.5]}
    async with (
        serving(registry, pki, channel) as (node, state),
        jesus.Client(registry, tls=pki.creds("billing")) as client,
    ):
        methods = node.records[0].methods
        assert (methods["secret"].seal, methods["signed"].seal) == ("encrypt", "sign")
        assert await client.call("vault.secret", data) == expected(data)
        assert await client.call("vault.signed", data) == expected(data)
        assert await client.call("vault.secret", "again") == expected("again")
        if channel != "udp":
            items = [item async for item in client.stream("vault.count", 3)]
            assert items == [{"i": i, "caller": ["billing", "seal"]} for i in range(3)]
    assert state == {"secret": 2, "signed": 1}


def ledger(seen: list[tuple[Any, ...]], tag: str) -> jesus.Service:
    svc = jesus.Service("vault", channel="udp")

    @svc.listener("ledger.*", seal="encrypt", allow=["billing"])
    async def on_entry(data: Any) -> None:
        meta, caller = jesus.current_call(), jesus.current_caller()
        assert meta is not None and caller is not None
        seen.append((tag, meta.event, data, caller.name, caller.proof))

    return svc


async def test_a_sealed_listener_takes_acked_and_broadcast_events(registry: str, pki: Pki) -> None:
    """An encrypted ack listener gets an event from a caller with credentials (once, from
    one instance of its group); broadcast reaches both instances; a stranger's is refused."""
    seen: list[tuple[Any, ...]] = []
    async with AsyncExitStack() as stack:
        for tag in ("one", "two"):
            node = await stack.enter_async_context(
                jesus.serve(ledger(seen, tag), registry=registry, tls=pki.creds("vault"))
            )
            assert node.records[0].listens["ledger.*"]["seal"] == "encrypt"
        client = await stack.enter_async_context(jesus.Client(registry, tls=pki.creds("billing")))
        entry = {"card": CARD, "amount": 12}
        assert await client.emit("ledger.entry", entry, mode="ack") == ["vault"]
        await wait_until(lambda: len(seen) == 1)
        (tag, event, data, name, proof) = seen[0]
        assert (event, data, name, proof) == ("ledger.entry", entry, "billing", "seal")

        assert await client.emit("ledger.entry", 2, mode="ack", broadcast=True) == ["vault"]
        await wait_until(lambda: len(seen) == 3)
        assert sorted(s[0] for s in seen[1:]) == ["one", "two"]
        assert all(s[1:] == ("ledger.entry", 2, "billing", "seal") for s in seen[1:])

        async with jesus.Client(registry, tls=pki.creds("stranger")) as stranger:
            with pytest.raises(jesus.EventNotDelivered) as refused:
                await stranger.emit("ledger.entry", 3, mode="ack")
            assert isinstance(refused.value.failures["vault"], jesus.PermissionDenied)
        await anyio.sleep(0.1)
    assert len(seen) == 3


# ---------------------------------------------------------------------- confidentiality


async def test_what_travels_of_an_encrypted_call_is_unreadable(registry: str, pki: Pki) -> None:
    """A relay on the path sees neither the request's data nor the answer of an encrypted
    call, and sees both of a signed one (which protects integrity only)."""
    async with serving(registry, pki) as (node, _), anyio.create_task_group() as tg:
        tap = Tap(node.endpoints["udp"])
        await tg.start(tap.run)

        def via_tap(record: InstanceRecord) -> InstanceRecord:
            return dataclasses.replace(record, endpoints={**record.endpoints, "udp": tap.endpoint})

        async with fooled(registry, pki.creds("billing"), via_tap) as client:
            assert await client.call("vault.secret", {"card": CARD}) == expected({"card": CARD})
            assert tap.up and tap.down
            wire = b"".join(tap.up + tap.down)
            assert CARD.encode() not in wire and COMBINATION.encode() not in wire
            assert b"vault.secret" in wire  # meta and method stay readable, for relays
            tap.up.clear()
            tap.down.clear()
            assert await client.call("vault.signed", {"card": CARD}) == expected({"card": CARD})
            assert CARD.encode() in b"".join(tap.up)
            assert COMBINATION.encode() in b"".join(tap.down)
        tg.cancel_scope.cancel()

        # The same, of the sealed value itself, built with the node's published key.
        sealer, key = sealer_for(node, pki.creds("billing"))
        blob, _ = sealer.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, request_meta())
        assert CARD.encode() not in blob and len(blob) > len(PLAIN)
        blob, _ = sealer.seal_request(key, "sign", "msgpack", PLAIN, METHOD, request_meta())
        assert CARD.encode() in blob


# ---------------------------------------------------------------------- integrity


@pytest.mark.parametrize("protection", ["encrypt", "sign"])
# A flipped high bit of the certificate's serial makes it negative: cryptography warns.
@pytest.mark.filterwarnings("ignore:Parsed a serial number")
async def test_every_altered_byte_of_a_sealed_request_is_refused(
    registry: str, pki: Pki, protection: str
) -> None:
    """Any one byte of a sealed request changed, anywhere (header, grant, certificate,
    signature, counter, timestamp, body, tag), and the recipient refuses it SEAL_REFUSED,
    whether its grant is new to the recipient or one it accepted before; the unaltered
    request still opens afterwards, as does a fresh one."""
    async with serving(registry, pki) as (node, _):
        opener = node.opener
        assert opener is not None
        meta = request_meta()
        sealer, key = sealer_for(node, pki.creds("billing"))
        renewing, _ = sealer_for(node, pki.creds("billing"))
        renewing.book.lifetime = 0.0  # a new grant for every request

        def sealed(by: Sealer) -> bytes:
            return by.seal_request(key, protection, "msgpack", PLAIN, METHOD, meta)[0]

        def outcome(blob: bytes) -> str | None:
            """None when refused as it must be, else what happened."""
            try:
                opener.open_request(blob, METHOD, meta, protection)
            except jesus.SealRefused:
                return None
            except Exception as exc:
                return repr(exc)
            return "opened"

        wrong: dict[tuple[int, int], str] = {}
        size = len(sealed(renewing))
        for i in range(size):  # each under a grant the vault has never seen
            for mask in MASKS:
                blob = sealed(renewing)
                if i < len(blob) and (why := outcome(flipped(blob, i, mask))) is not None:
                    wrong[(i, mask)] = why
        assert wrong == {}, f"{len(wrong)} of {size * len(MASKS)} alterations not refused: {wrong}"

        first = sealed(sealer)
        assert opener.open_request(first, METHOD, meta, protection)[1:3] == ("msgpack", "billing")
        blob = sealed(sealer)  # under the grant the vault has just accepted
        assert sealer.book.signer.chain[0] in blob  # the grant carries the caller's certificate
        wrong = {(i, 0): why for i, altered in flips(blob) if (why := outcome(altered))}
        assert wrong == {}, f"{len(wrong)} alterations not refused: {wrong}"
        for short in [blob[:n] for n in range(len(blob))]:
            assert outcome(short) is None
        plaintext, codec, caller, _ = opener.open_request(blob, METHOD, meta, protection)
        assert (plaintext, codec, caller) == (PLAIN, "msgpack", "billing")
        assert opener.open_request(sealed(sealer), METHOD, meta, protection)[0] == PLAIN
        assert opener.open_request(sealed(renewing), METHOD, meta, protection)[0] == PLAIN


async def test_a_relay_that_alters_a_sealed_request_gets_it_refused(
    registry: str, pki: Pki
) -> None:
    """Over udp, through a relay that changes one byte of the request (its tag, its
    certificate's version): the caller hears SEAL_REFUSED at once, the handler never runs."""
    creds = pki.creds("billing")
    assert creds.certificate is not None and creds.key is not None
    leaf = Signer(creds.certificate, creds.key).chain[0]
    version = leaf.index(b"\xa0\x03\x02\x01\x02") + 4  # X.509 v3, as DER

    def last_byte(data: bytes) -> bytes:  # the data is last in the envelope: the tag's end
        return flipped(data, len(data) - 1, 0x01)

    def certificate_version(data: bytes) -> bytes:
        at = data.find(leaf)
        return data if at < 0 else flipped(data, at + version, 0x01)

    async with serving(registry, pki) as (node, state):
        for alter in (last_byte, certificate_version):
            async with anyio.create_task_group() as tg:
                tap = Tap(node.endpoints["udp"], alter)
                await tg.start(tap.run)

                def via_tap(record: InstanceRecord, tap: Tap = tap) -> InstanceRecord:
                    endpoints = {**record.endpoints, "udp": tap.endpoint}
                    return dataclasses.replace(record, endpoints=endpoints)

                async with fooled(registry, creds, via_tap) as client:
                    with pytest.raises(jesus.SealRefused) as refused:
                        await client.call("vault.secret", {"card": CARD}, timeout=3)
                    assert refused.value.remote, alter.__name__
                tg.cancel_scope.cancel()
    assert state == {}


async def test_the_meta_a_seal_binds_cannot_be_changed(registry: str, pki: Pki) -> None:
    """The method, corrid, mode, userid, sender and event a request was sealed with are
    bound to it: a relay that changes any of them gets it refused."""
    async with serving(registry, pki) as (node, _):
        opener = node.opener
        assert opener is not None
        sealer, key = sealer_for(node, pki.creds("billing"))
        meta = request_meta()
        blob, _ = sealer.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, meta)
        changes = {
            "method": (dataclasses.replace(meta), "vault.signed"),
            "corrid": (dataclasses.replace(meta, corrid="someone-else"), METHOD),
            "mode": (dataclasses.replace(meta, mode=ResponseMode.ACK), METHOD),
            "userid": (dataclasses.replace(meta, userid="admin"), METHOD),
            "no userid": (dataclasses.replace(meta, userid=None), METHOD),
            "sender": (dataclasses.replace(meta, sender="payroll"), METHOD),
            "event": (dataclasses.replace(meta, event="ledger.deleted"), METHOD),
        }
        for what, (changed, method) in changes.items():
            with pytest.raises(jesus.SealRefused, match="altered"):
                opener.open_request(blob, method, changed, "encrypt")
                pytest.fail(f"a changed {what} was taken")
        # Meta the seal does not bind (a relay may set it) leaves the request valid.
        relayed = dataclasses.replace(meta, deadline_ms=1234, req_out_ts=1.0)
        assert opener.open_request(blob, METHOD, relayed, "encrypt")[0] == PLAIN


@pytest.mark.parametrize("protection", ["encrypt", "sign"])
async def test_every_altered_byte_of_a_sealed_answer_is_refused(
    registry: str, pki: Pki, protection: str
) -> None:
    """An answer opens only unaltered, for the call it answers and at its place in the
    stream: a changed byte, another call's answer or another item's is refused."""
    async with serving(registry, pki) as (node, _):
        opener = node.opener
        assert opener is not None
        sealer, key = sealer_for(node, pki.creds("billing"))
        meta = request_meta()
        calls: list[tuple[SealedCall, SealedCall]] = []
        for _ in range(2):
            blob, mine = sealer.seal_request(key, protection, "msgpack", PLAIN, METHOD, meta)
            calls.append((mine, opener.open_request(blob, METHOD, meta, protection)[3]))
        (mine, theirs), (other_mine, other_theirs) = calls
        reply = msgpack.packb({"secret": COMBINATION})
        answer = Opener.seal_answer(theirs, reply, 0)
        assert Sealer.open_answer(mine, answer, 0) == reply
        assert (COMBINATION.encode() in answer) is (protection == "sign")
        survived = []
        for i, altered in flips(answer):
            try:
                Sealer.open_answer(mine, altered, 0)
            except jesus.SealRefused:
                continue
            survived.append(i)
        assert survived == []
        with pytest.raises(jesus.SealRefused):
            Sealer.open_answer(mine, answer, 1)  # as the second item of a stream
        with pytest.raises(jesus.SealRefused):
            Sealer.open_answer(other_mine, answer, 0)  # as the answer of another call
        with pytest.raises(jesus.SealRefused):
            Sealer.open_answer(mine, Opener.seal_answer(other_theirs, reply, 0), 0)
        with pytest.raises(jesus.SealRefused):
            Sealer.open_answer(mine, reply, 0)  # an answer that is not sealed at all
        assert Sealer.open_answer(mine, answer, 0) == reply


# ---------------------------------------------------------------------- replay


async def test_a_replayed_request_is_refused(registry: str, pki: Pki) -> None:
    """The same sealed request opens once; a late one opens if it was not seen (within
    the window of counters), one too far behind does not."""
    async with serving(registry, pki) as (node, _):
        opener = node.opener
        assert opener is not None
        sealer, key = sealer_for(node, pki.creds("billing"))
        meta = request_meta()

        def sealed() -> bytes:
            return sealer.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, meta)[0]

        first, second, third = sealed(), sealed(), sealed()
        assert opener.open_request(first, METHOD, meta, "encrypt")[0] == PLAIN
        with pytest.raises(jesus.SealRefused, match="replay"):
            opener.open_request(first, METHOD, meta, "encrypt")
        assert opener.open_request(third, METHOD, meta, "encrypt")[0] == PLAIN
        assert opener.open_request(second, METHOD, meta, "encrypt")[0] == PLAIN  # late, unseen
        for blob in (second, third):
            with pytest.raises(jesus.SealRefused, match="replay"):
                opener.open_request(blob, METHOD, meta, "encrypt")
        late = sealed()
        for _ in range(1100):
            newest = sealed()
        assert opener.open_request(newest, METHOD, meta, "encrypt")[0] == PLAIN
        with pytest.raises(jesus.SealRefused, match="too far behind"):
            opener.open_request(late, METHOD, meta, "encrypt")


def reencoded(blob: bytes) -> bytes:
    """`blob` with its grant's ECDSA signature (r, s) replaced by (r, n - s): another valid
    signature of the same grant, which anyone on the path can make."""
    sealed = envelope.unpack_request(blob)
    grant = envelope.unpack_grant(sealed.grant)
    r, s = decode_dss_signature(grant.signature)
    other = envelope.pack_grant(grant.signed, encode_dss_signature(r, P256_ORDER - s))
    assert other != sealed.grant
    return envelope.pack_request(
        sealed.protection, sealed.codec, other, sealed.counter, sealed.timestamp_ms, sealed.body
    )


async def test_a_replay_under_a_reencoded_grant_is_refused(registry: str, pki: Pki) -> None:
    """ECDSA signatures are malleable: a relay can re-sign nothing yet give the same grant
    other bytes. A request replayed with such a grant is still a replay."""
    async with serving(registry, pki) as (node, _):
        opener = node.opener
        assert opener is not None
        sealer, key = sealer_for(node, pki.creds("billing"))
        meta = request_meta()
        blob, _ = sealer.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, meta)
        assert opener.open_request(blob, METHOD, meta, "encrypt")[0] == PLAIN
        with pytest.raises(jesus.SealRefused):
            opener.open_request(reencoded(blob), METHOD, meta, "encrypt")
        # And the other way round: the re-encoded grant first, the original replayed.
        fresh = Sealer(pki.creds("billing"))  # a new grant, not yet seen by the vault
        blob, _ = fresh.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, meta)
        assert opener.open_request(reencoded(blob), METHOD, meta, "encrypt")[0] == PLAIN
        with pytest.raises(jesus.SealRefused):
            opener.open_request(blob, METHOD, meta, "encrypt")


async def test_a_request_sealed_outside_the_window_is_refused(
    registry: str, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `Limits(seal_window=5)`, a request sealed 4 s ago (or ahead) opens, one sealed
    6 s ago or 6 s in the future does not."""
    async with serving(registry, pki, limits=jesus.Limits(seal_window=5)) as (node, _):
        opener = node.opener
        assert opener is not None
        sealer, key = sealer_for(node, pki.creds("billing"))
        meta = request_meta()

        def sealed_at(offset: float) -> bytes:
            with monkeypatch.context() as patch:  # the caller's clock only
                clock = types.SimpleNamespace(time=lambda: time.time() + offset)
                patch.setattr(seal_module, "time", clock)
                return sealer.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, meta)[0]

        for offset in (-6.0, 6.0):
            with pytest.raises(jesus.SealRefused, match="too long ago"):
                opener.open_request(sealed_at(offset), METHOD, meta, "encrypt")
        for offset in (-4.0, 4.0):
            assert opener.open_request(sealed_at(offset), METHOD, meta, "encrypt")[0] == PLAIN


# ---------------------------------------------------------------------- downgrade


async def test_a_registry_that_says_a_method_is_not_sealed_cannot_downgrade_it(
    registry: str, pki: Pki
) -> None:
    """The registry says vault.secret is not sealed: the plain request is refused and the
    handler does not run; a caller that demands the seal itself still gets it sealed, and
    a demand of 'sign' for an 'encrypt' method is refused as too weak."""
    async with serving(registry, pki, "tcp") as (_, state):
        async with fooled(registry, pki.creds("billing"), unsealed("secret")) as client:
            with pytest.raises(jesus.SealRefused, match="must be sealed 'encrypt'") as refused:
                await client.call("vault.secret", {"card": CARD})
            assert refused.value.remote
            with pytest.raises(jesus.SealRefused, match="signed only"):
                await client.call("vault.secret", {"card": CARD}, seal="sign")
            assert state["secret"] == 0
            answer = await client.call("vault.secret", {"card": CARD}, seal="encrypt")
            assert answer == expected({"card": CARD})
        async with fooled(registry, pki.creds("billing"), unsealed("signed")) as client:
            assert await client.call("vault.signed", 1, seal="encrypt") == expected(1)
    assert state == {"secret": 1, "signed": 1}


async def test_an_encrypt_method_refuses_a_signed_request(registry: str, pki: Pki) -> None:
    """A request sealed 'sign' (valid in itself) is refused by a method declared 'encrypt';
    an encrypted one is taken by a method declared 'sign'."""
    async with serving(registry, pki) as (node, _):
        opener = node.opener
        assert opener is not None
        sealer, key = sealer_for(node, pki.creds("billing"))
        meta = request_meta()
        signed, _ = sealer.seal_request(key, "sign", "msgpack", PLAIN, METHOD, meta)
        with pytest.raises(jesus.SealRefused, match="signed only"):
            opener.open_request(signed, METHOD, meta, "encrypt")
        assert opener.open_request(signed, METHOD, meta, "sign")[0] == PLAIN
        encrypted, _ = sealer.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, meta)
        assert opener.open_request(encrypted, METHOD, meta, "sign")[0] == PLAIN


# ---------------------------------------------------------------------- trust


async def test_a_caller_the_vault_does_not_trust_is_refused(registry: str, pki: Pki) -> None:
    """Over udp (no TLS: the seal is all that proves anything), a 'billing' certificate
    from another CA, or an expired one, is refused and the handler does not run."""
    async with serving(registry, pki) as (_, state):
        for creds, why in (
            (pki.impostor("billing"), "not trusted"),
            (pki.creds("expired"), "not valid at"),
        ):
            async with jesus.Client(registry, tls=creds) as client:
                with pytest.raises(jesus.SealRefused, match=why) as refused:
                    await client.call("vault.secret", {"card": CARD})
                assert refused.value.remote
                with pytest.raises(jesus.SealRefused):
                    await client.call("vault.signed", 1)
        async with jesus.Client(registry, tls=pki.creds("billing")) as client:
            assert await client.call("vault.signed", 1) == expected(1)
    assert state == {"signed": 1}


def swapped_key(seal: dict[str, Any]) -> dict[str, Any]:
    """`seal` with each published key replaced by one the registry holds."""
    theirs = X25519PrivateKey.generate().public_key()
    raw = theirs.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        **seal,
        "keys": [{**k, "x25519": base64.b64encode(raw).decode()} for k in seal["keys"]],
    }


async def test_a_key_the_registry_swapped_is_not_sealed_to(registry: str, pki: Pki) -> None:
    """The caller checks the published key against its own trust anchors before it seals:
    a swapped key fails the signature, a key signed by another CA's 'vault' is not trusted,
    a record with no key cannot be sealed to; nothing is sent."""
    async with serving(registry, pki) as (node, state):
        real = node.records[0].seal
        impostor = pki.impostor("vault")
        assert impostor.certificate is not None and impostor.key is not None
        theirs = KeyRing(Signer(impostor.certificate, impostor.key)).published("vault")
        for seal, why in (
            (swapped_key(real), "signature does not match"),
            (theirs, "not trusted"),
            ({}, "publishes no sealing key"),
        ):
            async with fooled(registry, pki.creds("billing"), publishing(seal)) as client:
                with pytest.raises(jesus.SealRefused, match=why) as refused:
                    await client.call("vault.secret", {"card": CARD})
                assert not refused.value.remote  # refused here, before sending
                assert "cannot seal to vault" in refused.value.message
    assert state == {}


async def test_a_record_whose_certificate_names_another_service_is_refused(
    registry: str, pki: Pki
) -> None:
    """A vault published with billing's certificate (its keys validly signed by it) is not
    the vault: the caller refuses to seal to it."""
    async with (
        serving(registry, pki, tls=pki.creds("billing")) as (_, state),
        jesus.Client(registry, tls=pki.creds("billing")) as client,
    ):
        with pytest.raises(
            jesus.SealRefused, match="the certificate names 'billing', not 'vault'"
        ) as refused:
            await client.call("vault.secret", {"card": CARD})
        assert not refused.value.remote
        assert state == {}


async def test_a_proven_caller_not_on_the_allow_list_is_refused_and_logged(
    registry: str, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A stranger with a trusted certificate, claiming to be billing, is known by its seal
    and refused PERMISSION_DENIED; the server logs who it was and how it knows."""
    async with (
        serving(registry, pki) as (_, state),
        jesus.Client(registry, tls=pki.creds("stranger"), name="billing") as client,
    ):
        with (
            caplog.at_level(logging.WARNING, logger="jesus.server"),
            pytest.raises(jesus.PermissionDenied, match="'stranger' may not call"),
        ):
            await client.call("vault.secret", {"card": CARD})
        assert (await client.call("vault.signed", 1))["caller"] == ["stranger", "seal"]
    refusals = [r.getMessage() for r in caplog.records if r.name == "jesus.server"]
    refusals = [m for m in refusals if "refused vault.secret" in m]
    assert len(refusals) == 1 and "'stranger' (proven by seal" in refusals[0], refusals
    assert CARD not in refusals[0]
    assert state == {"signed": 1}


# ---------------------------------------------------------------------- rotation


async def test_keys_rotate_under_traffic(registry: str, pki: Pki) -> None:
    """Two rotations while a caller makes sealed calls without pause: every call succeeds,
    the registry publishes the newest key first and the caller moves to it, and once the old
    keys are gone a new caller still gets through (it seals to the new key)."""
    async with serving(registry, pki) as (node, state):
        opener = node.opener
        assert opener is not None
        backend = node.client.resolver.backend
        (before,) = await backend.list_instances("vault")
        old_seal = before.seal
        results: list[Any] = []
        stop = anyio.Event()
        resolver = Resolver(EmbeddedRegistry(registry), refresh=0.05)

        async def traffic(client: jesus.Client) -> None:
            i = 0
            while not (stop.is_set() and i >= 200):
                results.append(await client.call("vault.secret", i) == expected(i))
                i += 1

        async with (
            jesus.Client(resolver=resolver, tls=pki.creds("billing")) as client,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(traffic, client)
            with anyio.fail_after(20):
                await wait_until(lambda: len(results) >= 30)
                await node.rotate_seal_keys()
                await wait_until(lambda: len(results) >= 60)
                await node.rotate_seal_keys()
                (after,) = await backend.list_instances("vault")
                ids = [k["id"] for k in after.seal["keys"]]
                newest = base64.b64encode(opener.ring.current.key_id).decode()
                assert ids[0] == newest, f"published {ids}, the current key is {newest}"
                assert len(ids) == 3 and ids[0] != old_seal["keys"][0]["id"]
                assert old_seal["keys"][0]["id"] in ids  # still taken, for its grace
                await wait_until(lambda: len(opener.grants) >= 2)  # the caller moved on
                stop.set()
        assert len(results) >= 200 and all(results)

        # The old keys' grace is over: what is sealed to them is refused, a new caller
        # (reading the registry afresh) gets through.
        current = opener.ring.current
        opener.ring.keys = {current.key_id: current}
        stale = Sealer(pki.creds("billing"))
        key = stale.recipient("vault", before.instance_id, old_seal)
        blob, _ = stale.seal_request(key, "encrypt", "msgpack", PLAIN, METHOD, request_meta())
        with pytest.raises(jesus.SealRefused, match="does not hold"):
            opener.open_request(blob, METHOD, request_meta(), "encrypt")
        async with jesus.Client(registry, tls=pki.creds("billing")) as fresh:
            assert await fresh.call("vault.secret", "new") == expected("new")
    assert state["secret"] == len(results) + 1
