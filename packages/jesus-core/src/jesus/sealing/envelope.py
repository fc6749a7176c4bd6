"""The bytes of a sealed message and of a grant. All integers are unsigned big-endian.

Grant (made once per data key, signed by the caller's certificate key):

    version u8 = 1 | grant id 16 | recipient key id 8 | expires u64 (UNIX s)
    | wrapped u16-length-prefixed (HPKE enc || ciphertext of the 32-byte data key)
    | certificates u8 count, each u16-length-prefixed DER (leaf first)
    | signature u16-length-prefixed, over GRANT_CONTEXT || every byte before it

Sealed request:  version u8 = 1 | protection u8 | codec u8 | grant u16-length-prefixed
                 | counter u64 | timestamp u64 (UNIX ms) | body
Sealed answer:   version u8 = 1 | protection u8 | codec u8 | body

The body is, for "encrypt", the AEAD ciphertext of the codec-encoded value with its 16-byte
tag; for "sign", the codec-encoded value followed by the tag of an AEAD over no plaintext,
whose associated data ends with that value. Nonces and associated data: see `request_aad`,
`answer_aad`, `request_nonce`, `answer_nonce`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from jesus.payload import HEAVY

VERSION = 1
# The largest sealed request a server opens (as bytes, or base64 text on json channels): as
# much as it decodes on the event loop for a plain request before moving to a thread, since
# the seal is opened on the loop and a forged one costs its full decryption.
MAX_SEALED = HEAVY
SIGN, ENCRYPT = 1, 2
PROTECTIONS = {"sign": SIGN, "encrypt": ENCRYPT}
NAMES = {v: k for k, v in PROTECTIONS.items()}
CODECS = {"msgpack": 0, "json": 1}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
TAG = 16
GRANT_CONTEXT = b"jesus-seal-v1 grant\x00"
HPKE_INFO = b"jesus-seal-v1 data key\x00"
_REQUEST_AAD = b"jesus-seal-v1 request\x00"
_ANSWER_AAD = b"jesus-seal-v1 answer\x00"
_U16 = struct.Struct(">H")
_U64 = struct.Struct(">Q")
_HEAD = struct.Struct(">BBB")
_REQUEST_HEAD = struct.Struct(">BBBH")  # version, protection, codec, grant length
_AAD_NUMBERS = struct.Struct(">QQBH")  # counter, timestamp, mode, method length
_GRANT_HEAD = struct.Struct(">B16s8sQ")
_COUNTERS = struct.Struct(">QQ")
# Answers per call: the index is 3 bytes of the nonce. The last index is the error's; the one
# before it, the end of a stream (an empty answer sent before END, so that a stream cut short
# on the way is noticed).
ERROR_INDEX = (1 << 24) - 1
END_INDEX = ERROR_INDEX - 1
MAX_ITEMS = END_INDEX


def strength(seal: str | None) -> int:
    """How strongly `seal` protects: 0 (None), SIGN or ENCRYPT. ValueError for anything
    else: every declaration, record and call is checked with this."""
    if seal is None:
        return 0
    if isinstance(seal, str) and seal in PROTECTIONS:
        return PROTECTIONS[seal]
    raise ValueError(f"seal must be 'sign', 'encrypt' or None, not {seal!r}")


class SealFormatError(ValueError):
    """The bytes are not a sealed message or grant of this version."""


@dataclass(frozen=True, slots=True)
class Grant:
    grant_id: bytes
    key_id: bytes
    expires: int
    wrapped: bytes
    certificates: tuple[bytes, ...]
    signature: bytes
    signed: bytes  # the bytes the signature covers (after GRANT_CONTEXT)
    raw: bytes


@dataclass(frozen=True, slots=True)
class SealedRequest:
    protection: int
    codec: int
    grant: bytes
    counter: int
    timestamp_ms: int
    body: bytes


def _prefixed(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise SealFormatError("a length-prefixed field is longer than 65535 bytes")
    return _U16.pack(len(data)) + data


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise SealFormatError("truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def prefixed(self) -> bytes:
        return self.take(_U16.unpack(self.take(2))[0])


def grant_body(
    grant_id: bytes, key_id: bytes, expires: int, wrapped: bytes, certificates: list[bytes]
) -> bytes:
    """The signed part of a grant."""
    if len(certificates) > 255:
        raise SealFormatError("too many certificates")
    return (
        _GRANT_HEAD.pack(VERSION, grant_id, key_id, expires)
        + _prefixed(wrapped)
        + bytes([len(certificates)])
        + b"".join(_prefixed(c) for c in certificates)
    )


def pack_grant(body: bytes, signature: bytes) -> bytes:
    return body + _prefixed(signature)


def unpack_grant(raw: bytes) -> Grant:
    reader = _Reader(raw)
    version, grant_id, key_id, expires = _GRANT_HEAD.unpack(reader.take(_GRANT_HEAD.size))
    if version != VERSION:
        raise SealFormatError(f"grant version {version} is not {VERSION}")
    wrapped = reader.prefixed()
    certificates = tuple(reader.prefixed() for _ in range(reader.take(1)[0]))
    if not certificates:
        raise SealFormatError("a grant names its sender's certificate")
    signed = raw[: reader.pos]
    signature = reader.prefixed()
    if reader.pos != len(raw):
        raise SealFormatError("bytes after the grant's signature")
    return Grant(grant_id, key_id, expires, wrapped, certificates, signature, signed, raw)


def pack_request(
    protection: int, codec: int, grant: bytes, counter: int, timestamp_ms: int, body: bytes
) -> bytes:
    return (
        _HEAD.pack(VERSION, protection, codec)
        + _prefixed(grant)
        + _COUNTERS.pack(counter, timestamp_ms)
        + body
    )


def unpack_request(raw: bytes) -> SealedRequest:
    if len(raw) < _REQUEST_HEAD.size:
        raise SealFormatError("truncated")
    version, protection, codec, length = _REQUEST_HEAD.unpack_from(raw)
    if version != VERSION:
        raise SealFormatError(f"seal version {version} is not {VERSION}")
    if protection not in NAMES or codec not in CODEC_NAMES:
        raise SealFormatError("unknown protection or codec")
    end = _REQUEST_HEAD.size + length
    if len(raw) < end + _COUNTERS.size + TAG:
        raise SealFormatError("truncated")
    counter, timestamp_ms = _COUNTERS.unpack_from(raw, end)
    body = raw[end + _COUNTERS.size :]
    return SealedRequest(
        protection, codec, raw[_REQUEST_HEAD.size : end], counter, timestamp_ms, body
    )


def pack_answer(protection: int, codec: int, body: bytes) -> bytes:
    return _HEAD.pack(VERSION, protection, codec) + body


def unpack_answer(raw: bytes) -> tuple[int, int, bytes]:
    if len(raw) < _HEAD.size + TAG:
        raise SealFormatError("truncated")
    version, protection, codec = _HEAD.unpack_from(raw)
    if version != VERSION or protection not in NAMES or codec not in CODEC_NAMES:
        raise SealFormatError("not a sealed answer of this version")
    return protection, codec, raw[_HEAD.size :]


def request_aad(
    head: bytes,
    grant_id: bytes,
    counter: int,
    timestamp_ms: int,
    method: str,
    corrid: str,
    mode: int,
    userid: str | None,
    sender: str | None,
    event: str | None,
) -> bytes:
    """What a request's tag covers besides its body: `head` is its first 3 bytes."""
    name, cid = method.encode(), corrid.encode()
    user, frm, evt = (userid or "").encode(), (sender or "").encode(), (event or "").encode()
    return b"".join(
        (
            _REQUEST_AAD,
            head,
            grant_id,
            _AAD_NUMBERS.pack(counter, timestamp_ms, mode, len(name)),
            name,
            _U16.pack(len(cid)),
            cid,
            _U16.pack(len(user)),
            user,
            _U16.pack(len(frm)),
            frm,
            _U16.pack(len(evt)),
            evt,
        )
    )


def answer_aad(head: bytes, grant_id: bytes, counter: int, index: int) -> bytes:
    """What an answer's tag covers: the call it answers (grant and counter) and its place."""
    return _ANSWER_AAD + head + grant_id + _U64.pack(counter) + index.to_bytes(3, "big")


def request_nonce(counter: int) -> bytes:
    return b"\x00\x00\x00\x00" + _U64.pack(counter)


def answer_nonce(counter: int, index: int) -> bytes:
    return b"\x01" + index.to_bytes(3, "big") + _U64.pack(counter)
