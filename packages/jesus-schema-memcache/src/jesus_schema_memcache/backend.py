"""The registry on memcached.

Keys (under a prefix, `jesus` by default, `?prefix=` in the URL):

    PREFIX:services             JSON list of service names            (index, CAS-updated)
    PREFIX:svc:SERVICE          JSON list of instance ids of SERVICE  (index, CAS-updated)
    PREFIX:inst:SERVICE:ID      the instance record, JSON, expiring with its TTL

`?timeout=SECONDS` (1 s by default) bounds every connect and every read or write on a socket,
so a frozen memcached fails an operation with RegistryError instead of hanging it.

Listing reads the indexes and fetches the records in one round trip each (no key scan);
ids whose record has expired are dropped from the index as they are found. Index updates are
compare-and-set loops, so registrations racing each other never lose one another.
pymemcache blocks: every call runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread
from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import MemcacheError

from jesus.errors import ConfigurationError, RegistryError, map_exceptions
from jesus.registry.base import InstanceRecord

CAS_ATTEMPTS = 100
# ValueError: an index or record that is not JSON (written by something else) is a registry
# failure to report, never an exception that escapes a heartbeat.
_FAILURES = (MemcacheError, OSError, socket.timeout, ValueError)


def parse_servers(url: str) -> tuple[list[tuple[str, int]], str]:
    """The servers and the key prefix of a `memcache://` URL."""
    parts = urlsplit(url)
    if parts.scheme != "memcache":
        raise ConfigurationError(f"registry URL {url!r} is not memcache://")
    servers = []
    for item in parts.netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ConfigurationError(f"memcached server {item!r} must be host:port")
        servers.append((host.strip("[]"), int(port)))
    prefix = parse_qs(parts.query).get("prefix", ["jesus"])[0]
    return servers, prefix


def _without(instance: str) -> Callable[[list[str]], list[str] | None]:
    def change(ids: list[str]) -> list[str] | None:
        return [i for i in ids if i != instance] if instance in ids else None

    return change


def parse_timeout(url: str, default: float) -> float:
    raw = parse_qs(urlsplit(url).query).get("timeout")
    if raw is None:
        return default
    try:
        timeout = float(raw[0])
    except ValueError:
        timeout = math.nan
    if not (math.isfinite(timeout) and timeout > 0):
        raise ConfigurationError(f"timeout={raw[0]!r} in {url!r} must be a positive number")
    return timeout


class MemcacheRegistry:
    def __init__(self, url: str, timeout: float = 1.0) -> None:
        self.url = url
        servers, self.prefix = parse_servers(url)
        self.timeout = timeout = parse_timeout(url, timeout)
        common: dict[str, Any] = {
            "connect_timeout": timeout,
            "timeout": timeout,
            "default_noreply": False,
            "allow_unicode_keys": False,
        }
        if len(servers) == 1:
            self._client: Any = PooledClient(servers[0], max_pool_size=16, **common)
        else:
            # Several nodes act as one: keys are spread by consistent hashing.
            self._client = HashClient(servers, use_pooling=True, retry_attempts=1, **common)
        self._limiter = anyio.CapacityLimiter(8)

    # ------------------------------------------------------------------ keys

    def _services_key(self) -> str:
        return f"{self.prefix}:services"

    def _index_key(self, service: str) -> str:
        return f"{self.prefix}:svc:{service}"

    def _record_key(self, service: str, instance_id: str) -> str:
        return f"{self.prefix}:inst:{service}:{instance_id}"

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        # The thread is never abandoned: it holds a pooled connection until it returns, and
        # the socket timeouts make sure it does. At most 8 at a time, under the pool's 16.
        def call() -> Any:
            with map_exceptions({_FAILURES: RegistryError}, f"memcached at {self.url} failed"):
                return fn(*args)

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _update(self, key: str, change: Callable[[list[str]], list[str] | None]) -> None:
        """Compare-and-set loop on a JSON list; `change` returns the new list or None."""
        client = self._client
        for _ in range(CAS_ATTEMPTS):
            raw, token = client.gets(key)
            current = json.loads(raw) if raw else []
            new = change(list(current))
            if new is None:
                return
            data = json.dumps(sorted(set(new))).encode()
            if token is None:
                if client.add(key, data, noreply=False):
                    return
            elif client.cas(key, data, token, noreply=False):
                return
            # another writer got in between: read again
        raise RegistryError(f"could not update {key}: {CAS_ATTEMPTS} conflicting writes in a row")

    # ------------------------------------------------------------------ RegistryBackend

    async def register(self, record: InstanceRecord, ttl: float) -> None:
        raw = record.to_json()
        raw["expires_at"] = time.time() + ttl
        data = json.dumps(raw).encode()
        service, instance = record.service, record.instance_id

        def write() -> None:
            # memcached expiry is whole seconds on a clock that ticks once a second (and 0
            # means never): keep the item two seconds longer; `expires_at` in it is exact.
            key = self._record_key(service, instance)
            self._client.set(key, data, expire=math.ceil(ttl) + 2)
            self._update(
                self._index_key(service), lambda ids: None if instance in ids else [*ids, instance]
            )
            self._update(
                self._services_key(), lambda names: None if service in names else [*names, service]
            )

        await self._run(write)

    async def deregister(self, service: str, instance_id: str) -> None:
        def remove() -> None:
            self._client.delete(self._record_key(service, instance_id))
            self._update(self._index_key(service), _without(instance_id))

        await self._run(remove)

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        records: list[InstanceRecord] = await self._run(self._list, service)
        return records

    def _list(self, service: str | None) -> list[InstanceRecord]:
        client = self._client
        if service is None:
            raw = client.get(self._services_key())
            services = json.loads(raw) if raw else []
        else:
            services = [service]
        if not services:
            return []
        indexes = client.get_many([self._index_key(s) for s in services])
        wanted = {
            self._record_key(s, i): (s, i)
            for s in services
            for i in json.loads(indexes.get(self._index_key(s)) or b"[]")
        }
        found = client.get_many(list(wanted)) if wanted else {}
        now = time.time()
        records, gone = [], []
        for key, (svc, instance) in wanted.items():
            raw = found.get(key)
            record = None
            if raw is not None:
                try:
                    record = InstanceRecord.from_json(json.loads(raw))
                except (ValueError, KeyError, TypeError):
                    record = None
            if record is None or record.expires_at < now:
                gone.append((svc, instance))
            else:
                records.append(record)
        for svc, instance in gone:  # expired: tidy the index as we go
            if found.get(self._record_key(svc, instance)) is None:
                self._update(self._index_key(svc), _without(instance))
        return sorted(records, key=lambda r: (r.service, r.instance_id))

    async def is_registered(self, service: str, instance_id: str) -> bool:
        """Whether the record and both index entries of an instance are there: one round
        trip, for the heartbeat to notice at once a memcached that restarted empty."""
        keys = [
            self._record_key(service, instance_id),
            self._index_key(service),
            self._services_key(),
        ]

        def check() -> bool:
            found = self._client.get_many(keys)
            try:
                return (
                    keys[0] in found
                    and instance_id in json.loads(found.get(keys[1]) or b"[]")
                    and service in json.loads(found.get(keys[2]) or b"[]")
                )
            except ValueError:  # an index that is not JSON lists no one
                return False

        registered: bool = await self._run(check)
        return registered

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._client.close)
