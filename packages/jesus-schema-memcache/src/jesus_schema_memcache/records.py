"""Instance records on memcached: a small head that the heartbeat renews, and the record's
content in chunks named by its digest, written once.

    KEY                        {"service": ..., "instance_id": ..., "expires_at": ...,
                                "chunks": {"count": N, "bytes": SIZE, "sha256": HEX}}
    KEY:chunk:DIGEST16:I       slice I of the record's JSON without `expires_at`

A chunk's content never changes (its key names the digest), so a renewal touches the chunks
(their expiry, no data) and writes the head again: a few hundred bytes, whatever the record's
size. A reader that read a record before reads only its head again, and a reader never sees
a record made of two versions. Slices are at most CHUNK_BYTES, under memcached's item size
limit, so a record of any size (up to MAX_RECORD_BYTES) fits. A plain JSON record at KEY (a
writer that is not jesus) is read as it is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any

from jesus.errors import RegistryLimit
from jesus.registry.base import InstanceRecord
from jesus_schema_memcache.store import ITEM_BYTES, Store, safe_key

CHUNK_BYTES = ITEM_BYTES
MAX_RECORD_BYTES = 16 * 1024 * 1024


def _json(raw: Any) -> bytes:
    return json.dumps(raw, separators=(",", ":")).encode()


def chunk_keys(key: str, digest: str, count: int) -> list[str]:
    return [safe_key(f"{key}:chunk:{digest[:16]}:{i}") for i in range(count)]


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store
        # record key -> (digest, its chunk keys) of what this process wrote there last
        self._written: dict[str, tuple[str, list[str]]] = {}
        # record key -> (digest, record) of what this process read there last
        self._read: dict[str, tuple[str, InstanceRecord]] = {}

    def write(self, key: str, raw: dict[str, Any], expire: int) -> None:
        body = _json({k: v for k, v in raw.items() if k != "expires_at"})
        if len(body) > MAX_RECORD_BYTES:
            raise RegistryLimit(
                f"the record of {raw.get('service')} is {len(body):,} bytes, past the "
                f"registry's limit of {MAX_RECORD_BYTES:,}: declare fewer methods or listeners, "
                "or smaller schemas (shared definitions by $ref)"
            )
        digest = hashlib.sha256(body).hexdigest()
        count = max(1, -(-len(body) // CHUNK_BYTES))
        keys = chunk_keys(key, digest, count)
        written = self._written.get(key)
        renewed = written is not None and written[0] == digest
        if renewed:
            renewed = all(self.store.touch(k, expire) for k in keys)
        if not renewed:
            for i, k in enumerate(keys):
                self.store.set(k, body[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES], expire)
            self._written[key] = (digest, keys)
        head = {
            "service": raw.get("service"),
            "instance_id": raw.get("instance_id"),
            "expires_at": raw["expires_at"],
            "chunks": {"count": count, "bytes": len(body), "sha256": digest},
        }
        self.store.set(key, _json(head), expire)

    def parts(self, key: str) -> list[str]:
        """The chunk keys of what this process wrote at `key` last (for the heartbeat to see
        that memcached still holds them)."""
        written = self._written.get(key)
        return [] if written is None else written[1]

    def read_many(self, keys: list[str]) -> dict[str, InstanceRecord | None]:
        """The records memcached holds at `keys`; None for one that is there but unreadable
        (written by something else, or its chunks missing: skipped, and left in place).
        Only heads are read for records read before, unless they changed."""
        found: dict[str, InstanceRecord | None] = {}
        heads: dict[str, dict[str, Any]] = {}
        for key, data in self.store.get_many(keys).items():
            try:
                raw = json.loads(data)
                if isinstance(raw, dict) and isinstance(raw.get("chunks"), dict):
                    heads[key] = raw
                    continue
                found[key] = InstanceRecord.from_json(raw)
            except (ValueError, KeyError, TypeError):
                found[key] = None
        wanted: dict[str, list[str]] = {}
        for key, head in heads.items():
            digest = head["chunks"].get("sha256")
            known = self._read.get(key)
            if known is not None and known[0] == digest:
                found[key] = _renewed(known[1], head)
            else:
                wanted[key] = _chunk_keys(key, head)
        chunks = self.store.get_many(k for ks in wanted.values() for k in ks)
        for key, ks in wanted.items():
            record = found[key] = _assemble(heads[key], [chunks.get(k) for k in ks])
            if record is not None:
                self._read[key] = (heads[key]["chunks"]["sha256"], record)
        for key in keys:
            if key not in found:
                self._read.pop(key, None)
        return found

    def delete(self, key: str) -> None:
        """The head, and the chunks this process wrote (others expire with their TTL)."""
        self.store.delete(key)
        for chunk in self.parts(key):
            self.store.delete(chunk)
        self._written.pop(key, None)


def _chunk_keys(key: str, head: dict[str, Any]) -> list[str]:
    spec = head["chunks"]
    count, digest = spec.get("count"), spec.get("sha256")
    if not (isinstance(count, int) and 0 < count <= MAX_RECORD_BYTES // CHUNK_BYTES + 1):
        return []
    if not isinstance(digest, str):
        return []
    return chunk_keys(key, digest, count)


def _renewed(record: InstanceRecord, head: dict[str, Any]) -> InstanceRecord | None:
    expires_at = head.get("expires_at")
    if isinstance(expires_at, bool) or not isinstance(expires_at, int | float):
        return None
    if not math.isfinite(expires_at):
        return None
    return dataclasses.replace(record, expires_at=float(expires_at))


def _assemble(head: dict[str, Any], parts: list[bytes | None]) -> InstanceRecord | None:
    if not parts or any(p is None for p in parts):
        return None
    body = b"".join(p for p in parts if p is not None)
    if len(body) != head["chunks"].get("bytes"):
        return None
    if hashlib.sha256(body).hexdigest() != head["chunks"].get("sha256"):
        return None
    try:
        raw = json.loads(body)
        raw["expires_at"] = head.get("expires_at")
        return InstanceRecord.from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None
