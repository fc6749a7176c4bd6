"""The sealed envelope byte for byte (PROTOCOL.md, "Sealing"): these vectors let a peer in
another language check its implementation. The AEAD is deterministic given its key and
nonce, so the vectors fix the data key, grant id, counter and timestamp."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from jesus.sealing import envelope as e
from jesus.sealing.keys import key_statement
from jesus.sealing.replay import WINDOW, ReplayWindow
from jesus.sealing.seal import _open, _seal

DATA_KEY = bytes(range(32))
GRANT_ID = bytes(range(16))
COUNTER = 1
TIMESTAMP_MS = 1767225600000  # 2026-01-01T00:00:00Z
PLAINTEXT = bytes.fromhex("81a17801")  # msgpack {"x": 1}

REQUEST_AAD = (
    "6a657375732d7365616c2d7631207265717565737400010200000102030405060708090a0b0c0d0e0f"
    "00000000000000010000019b76daa80002000c7661756c742e7365637265740003632d31000000076269"
    "6c6c696e670000"
)
ENCRYPTED_BODY = "e8fd04d8187e8cc8347c4fc46e01275d355cac13"
SIGNED_BODY = "81a1780103a13bdc5497fb8abe3ddac90a525a9b"
REQUEST = (
    "01020000044747474700000000000000010000019b76daa800e8fd04d8187e8cc8347c4fc46e01275d355cac13"
)
ANSWER_AAD = (
    "6a657375732d7365616c2d763120616e7377657200010200000102030405060708090a0b0c0d0e0f0000"
    "000000000001000000"
)
ANSWER = "0102008b592416b0c897e4d47f7941d41b0a56f8"  # msgpack 42, encrypted
KEY_STATEMENT = (
    "6a657375732d7365616c2d7631206b657900057661756c74"  # context, name length, "vault"
    + "00" * 8  # key id
    + "00" * 32  # X25519 public key
    + "000000006955b900"  # not_after, 1767225600
)


def request_aad(protection: int) -> bytes:
    head = bytes((e.VERSION, protection, e.CODECS["msgpack"]))
    return e.request_aad(
        head, GRANT_ID, COUNTER, TIMESTAMP_MS, "vault.secret", "c-1", 2, None, "billing", None
    )


def test_request_vectors() -> None:
    aead = ChaCha20Poly1305(DATA_KEY)
    assert request_aad(e.ENCRYPT).hex() == REQUEST_AAD
    assert e.request_nonce(COUNTER).hex() == "000000000000000000000001"
    body = _seal(aead, e.ENCRYPT, e.request_nonce(COUNTER), request_aad(e.ENCRYPT), PLAINTEXT)
    assert body.hex() == ENCRYPTED_BODY
    signed = _seal(aead, e.SIGN, e.request_nonce(COUNTER), request_aad(e.SIGN), PLAINTEXT)
    assert signed.hex() == SIGNED_BODY and signed.startswith(PLAINTEXT)
    # The grant here is 4 placeholder bytes: the vector pins the message layer around it.
    packed = e.pack_request(e.ENCRYPT, 0, b"GGGG", COUNTER, TIMESTAMP_MS, body)
    assert packed.hex() == REQUEST
    parsed = e.unpack_request(packed)
    assert (parsed.grant, parsed.counter, parsed.timestamp_ms) == (b"GGGG", 1, TIMESTAMP_MS)
    opened = _open(aead, e.ENCRYPT, e.request_nonce(COUNTER), request_aad(e.ENCRYPT), parsed.body)
    assert opened == PLAINTEXT


def test_answer_vectors() -> None:
    head = bytes((e.VERSION, e.ENCRYPT, 0))
    aad = e.answer_aad(head, GRANT_ID, COUNTER, 0)
    assert aad.hex() == ANSWER_AAD
    assert e.answer_nonce(COUNTER, 0).hex() == "010000000000000000000001"
    body = _seal(ChaCha20Poly1305(DATA_KEY), e.ENCRYPT, e.answer_nonce(COUNTER, 0), aad, b"\x2a")
    assert e.pack_answer(e.ENCRYPT, 0, body).hex() == ANSWER


def test_key_statement_vector() -> None:
    assert key_statement("vault", bytes(8), bytes(32), 1767225600).hex() == KEY_STATEMENT


def test_grant_layout_round_trips_and_rejects_trailing_bytes() -> None:
    body = e.grant_body(GRANT_ID, b"K" * 8, 1767225600, b"w" * 80, [b"cert-1", b"cert-2"])
    assert body[:1] == b"\x01" and body[1:17] == GRANT_ID and body[17:25] == b"K" * 8
    raw = e.pack_grant(body, b"s" * 64)
    grant = e.unpack_grant(raw)
    assert grant.certificates == (b"cert-1", b"cert-2") and grant.signature == b"s" * 64
    assert grant.signed == body and grant.wrapped == b"w" * 80
    with pytest.raises(e.SealFormatError):
        e.unpack_grant(raw + b"x")
    with pytest.raises(e.SealFormatError):
        e.unpack_grant(raw[:-1])


def test_the_replay_window_takes_late_messages_once_and_refuses_old_ones() -> None:
    window = ReplayWindow()
    for counter in (5, 3, 4, 1):
        assert window.check(counter) is None
        window.accept(counter)
    assert window.check(3) is not None and window.check(2) is None
    window.accept(5 + WINDOW)
    assert "behind" in (window.check(5) or "")
    window.accept(2**62)  # a jump past the window keeps the state small
    assert window.seen == 1 and window.check(2**62) is not None
