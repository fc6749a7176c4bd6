"""Instance records on memcached: one JSON item per instance, expiring with its TTL.

A record larger than CHUNK_BYTES (600 methods with rich schemas pass 1 MB, memcached's item
size limit by default) is written in chunks: `KEY:chunk:DIGEST:I` for I = 0, 1..., each a
slice of the record's JSON without `expires_at`, and at KEY a head naming them:

    {"service": ..., "instance_id": ..., "expires_at": ...,
     "chunks": {"count": N, "bytes": SIZE, "sha256": HEX}}

A chunk's content never changes (its key names the digest), so a renewal only touches the
chunks (their expiry, no data) and writes the head again; a reader never sees a record made
of two versions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from jesus.errors import RegistryLimit
from jesus.registry.base import InstanceRecord
from jesus_schema_memcache.store import ITEM_BYTES, Store, safe_key

CHUNK_BYTES = ITEM_BYTES
MAX_RECORD_BYTES = 16 * 1024 * 1024


def _json(raw: Any) -> bytes:
    return json.dumps(raw, separators=(",", ":")).encode()


def chunk_key(key: str, digest: str, index: int) -> str:
    return safe_key(f"{key}:chunk:{digest[:16]}:{index}")


class Records:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._digests: dict[str, str] = {}  # record key -> digest of the chunks written last

    def write(self, key: str, raw: dict[str, Any], expire: int) -> None:
        data = _json(raw)
        if len(data) <= CHUNK_BYTES:
            self.store.set(key, data, expire)
            self._digests.pop(key, None)
            return
        body = _json({k: v for k, v in raw.items() if k != "expires_at"})
        if len(body) > MAX_RECORD_BYTES:
            raise RegistryLimit(
                f"the record of {raw.get('service')} is {len(body):,} bytes, past the "
                f"registry's limit of {MAX_RECORD_BYTES:,}: declare fewer methods or listeners, "
                "or smaller schemas (shared definitions by $ref)"
            )
        digest = hashlib.sha256(body).hexdigest()
        count = -(-len(body) // CHUNK_BYTES)
        keys = [chunk_key(key, digest, i) for i in range(count)]
        renewed = self._digests.get(key) == digest and all(
            self.store.touch(k, expire) for k in keys
        )
        if not renewed:
            for i, k in enumerate(keys):
                self.store.set(k, body[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES], expire)
            self._digests[key] = digest
        head = {
            "service": raw.get("service"),
            "instance_id": raw.get("instance_id"),
            "expires_at": raw["expires_at"],
            "chunks": {"count": count, "bytes": len(body), "sha256": digest},
        }
        self.store.set(key, _json(head), expire)

    def read_many(self, keys: list[str]) -> dict[str, InstanceRecord | None]:
        """The records memcached holds at `keys`; None for one that is there but unreadable
        (written by something else, or chunks missing: skipped, and left in place)."""
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
        if heads:
            wanted = {key: self._chunk_keys(key, head) for key, head in heads.items()}
            chunks = self.store.get_many(k for ks in wanted.values() for k in ks)
            for key, head in heads.items():
                found[key] = _assemble(head, [chunks.get(k) for k in wanted[key]])
        return found

    @staticmethod
    def _chunk_keys(key: str, head: dict[str, Any]) -> list[str]:
        spec = head["chunks"]
        count, digest = spec.get("count"), spec.get("sha256")
        if not (isinstance(count, int) and 0 < count <= MAX_RECORD_BYTES // CHUNK_BYTES + 1):
            return []
        if not isinstance(digest, str):
            return []
        return [chunk_key(key, digest, i) for i in range(count)]

    def delete(self, key: str) -> None:
        """The head: its chunks expire with it."""
        self.store.delete(key)
        self._digests.pop(key, None)


def _assemble(head: dict[str, Any], parts: list[bytes | None]) -> InstanceRecord | None:
    if not parts or any(p is None for p in parts):
        return None
    body = b"".join(p for p in parts if p is not None)
    if hashlib.sha256(body).hexdigest() != head["chunks"].get("sha256"):
        return None
    try:
        raw = json.loads(body)
        raw["expires_at"] = head.get("expires_at")
        return InstanceRecord.from_json(raw)
    except (ValueError, KeyError, TypeError):
        return None
