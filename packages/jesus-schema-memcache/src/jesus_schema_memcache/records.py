"""Instance records on memcached: one JSON item per instance, expiring with its TTL."""

from __future__ import annotations

import json
from typing import Any

from jesus.registry.base import InstanceRecord
from jesus_schema_memcache.store import Store


def write(store: Store, key: str, raw: dict[str, Any], expire: int) -> None:
    store.set(key, json.dumps(raw, separators=(",", ":")).encode(), expire)


def read_many(store: Store, keys: list[str]) -> dict[str, InstanceRecord | None]:
    """The records memcached holds at `keys`; None for one that is there but unreadable
    (written by something else: skipped, and left in place)."""
    found: dict[str, InstanceRecord | None] = {}
    for key, raw in store.get_many(keys).items():
        try:
            found[key] = InstanceRecord.from_json(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            found[key] = None
    return found


def delete(store: Store, key: str) -> None:
    store.delete(key)
