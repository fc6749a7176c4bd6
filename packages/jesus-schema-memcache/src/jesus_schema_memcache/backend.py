"""The registry on memcached.

Keys, under a prefix (`jesus` by default, `?prefix=` in the URL); each set is a paged set
(jesus_schema_memcache.pages), each index entry a service name:

    PREFIX:inst:SERVICE:ID      the instance record's head, expiring with its TTL, and
                                its content in chunks (jesus_schema_memcache.records)
    PREFIX:svc:SERVICE          set of the instance ids of SERVICE
    PREFIX:services             set of the service names
    PREFIX:lsn:PATTERN          set of the services with a listener of PATTERN
    PREFIX:emt:PATTERN          set of the services emitting an event PATTERN matches
    PREFIX:use:SERVICE          set of the services calling methods of SERVICE
    PREFIX:decl:SERVICE         set of the index keys (lsn, emt, use) naming SERVICE

`?timeout=SECONDS` (1 s by default) bounds every connect and every read or write on a socket;
`?connections=N` (4 by default) is the most connections this process opens to each node.

A heartbeat does not read indexes: it remembers the CAS value of each page its instance is
on and asks memcached for the current ones (meta get, no values); only a page that changed
is read again. A renewal writes the record's small head and touches its content; readers
read the content of a record only when it changed. Listing reads the sets and the records in a round trip or two each; ids whose
record is gone are taken out of their pages (one compare-and-set per page), and a service
with no instance left is forgotten: taken out of `services` and of every index naming it.
pymemcache blocks: every call runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio.to_thread

from jesus.errors import ConfigurationError, RegistryError, map_exceptions
from jesus.registry.base import InstanceRecord
from jesus.registry.lookups import index_keys
from jesus_schema_memcache import pages
from jesus_schema_memcache.records import Records
from jesus_schema_memcache.store import Store, safe_key

# ValueError: an index or record that is not what it should be (written by something else)
# is a registry failure to report, never an exception that escapes a heartbeat.
_FAILURES = (ValueError, KeyError, TypeError)
_KINDS = {"listens": "lsn", "emits": "emt", "uses": "use"}
Membership = tuple[str, str]  # (set key, member)


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


def parse_connections(url: str, default: int) -> int:
    raw = parse_qs(urlsplit(url).query).get("connections")
    if raw is None:
        return default
    if not raw[0].isdigit() or not 1 <= int(raw[0]) <= 1024:
        raise ConfigurationError(f"connections={raw[0]!r} in {url!r} must be 1 to 1024")
    return int(raw[0])


class MemcacheRegistry:
    def __init__(self, url: str, timeout: float = 1.0, connections: int = 4) -> None:
        self.url = url
        servers, self.prefix = parse_servers(url)
        self.timeout = parse_timeout(url, timeout)
        self.connections = parse_connections(url, connections)
        self.store = Store(servers, self.timeout, self.connections)
        self.records = Records(self.store)
        self._limiter = anyio.CapacityLimiter(self.connections)
        # Where this process last saw each membership of its instances: the page and its CAS
        # value, so that a heartbeat asks only whether those pages changed.
        self._seen: dict[Membership, tuple[str, int]] = {}

    # ------------------------------------------------------------------ keys

    def _key(self, *parts: str) -> str:
        return safe_key(":".join((self.prefix, *parts)))

    def services_key(self) -> str:
        return self._key("services")

    def ids_key(self, service: str) -> str:
        return self._key("svc", service)

    def record_key(self, service: str, instance_id: str) -> str:
        return self._key("inst", service, instance_id)

    def index_key(self, kind: str, key: str) -> str:
        return self._key(_KINDS[kind], key)

    def decl_key(self, service: str) -> str:
        return self._key("decl", service)

    def _memberships(self, record: InstanceRecord) -> list[Membership]:
        """Every set an instance is in, in the order it is added to them: an instance is in
        its service's ids before its service is anywhere else, and a service's index keys
        are in its `decl` before it is in them, so whoever forgets a name finds them all."""
        service = record.service
        indexes = [
            self.index_key(kind, key)
            for kind, keys in sorted(index_keys(record).items())
            for key in sorted(keys)
        ]
        return [
            (self.ids_key(service), record.instance_id),
            (self.services_key(), service),
            *((self.decl_key(service), key) for key in indexes),
            *((key, service) for key in indexes),
        ]

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        # The thread is never abandoned: it holds a pooled connection until it returns, and
        # the socket timeouts make sure it does. At most `connections` at a time.
        def call() -> Any:
            with map_exceptions({_FAILURES: RegistryError}, f"memcached at {self.url} failed"):
                return fn(*args)

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    def _confirm(
        self, wanted: Sequence[Membership], must_exist: Sequence[str] = ()
    ) -> tuple[set[Membership], bool]:
        """Which of `wanted` the registry no longer has, and whether all of `must_exist` are
        there. One meta get of the pages they were last seen on; a page that changed (or was
        never seen) is read, bounded by the page size whatever the size of its set."""
        known = {m: self._seen[m] for m in wanted if m in self._seen}
        versions = self.store.versions([page for page, _ in known.values()] + list(must_exist))
        suspects = {
            m: (known[m][0] if m in known else None)
            for m in wanted
            if m not in known or versions.get(known[m][0]) != known[m][1]
        }
        where = pages.locate(self.store, suspects) if suspects else {}
        for m in suspects:
            if m in where:
                self._seen[m] = where[m]
            else:
                self._seen.pop(m, None)
        return {m for m in suspects if m not in where}, all(k in versions for k in must_exist)

    # ------------------------------------------------------------------ RegistryBackend

    async def register(self, record: InstanceRecord, ttl: float) -> None:
        raw = record.to_json()
        raw["expires_at"] = time.time() + ttl
        # memcached expiry is whole seconds on a clock that ticks once a second (and 0
        # means never): keep the item two seconds longer; `expires_at` in it is exact.
        expire = math.ceil(ttl) + 2
        key = self.record_key(record.service, record.instance_id)
        wanted = self._memberships(record)

        def write() -> None:
            self.records.write(key, raw, expire)
            lost, _ = self._confirm(wanted)
            for membership in wanted:  # in order, see _memberships
                if membership in lost:
                    # its page, but not yet its CAS value: the next check reads that page
                    self._seen[membership] = (pages.add(self.store, *membership), -1)

        await self._run(write)

    async def is_registered(self, service: str, instance_id: str) -> bool:
        """Whether the record of an instance and its two memberships (its service's ids, the
        service names) are there: one meta get of their keys, no values moved unless a page
        changed. For the heartbeat to notice at once a memcached that restarted empty."""
        wanted = [(self.ids_key(service), instance_id), (self.services_key(), service)]
        key = self.record_key(service, instance_id)

        def check() -> bool:
            lost, present = self._confirm(wanted, [key, *self.records.parts(key)])
            return present and not lost

        registered: bool = await self._run(check)
        return registered

    async def deregister(self, service: str, instance_id: str) -> None:
        ids = self.ids_key(service)

        def remove() -> None:
            self.records.delete(self.record_key(service, instance_id))
            seen = self._seen.pop((ids, instance_id), None)
            where = (
                {seen[0]: {instance_id}} if seen else pages.pages_of(self.store, [ids], instance_id)
            )
            emptied = any(not left for left in pages.remove(self.store, where).values())
            if emptied and not pages.read(self.store, [ids]).of(ids):
                self._forget(service)

        await self._run(remove)

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        found: list[InstanceRecord] = await self._run(self._list, service)
        return found

    def _list(self, service: str | None) -> list[InstanceRecord]:
        if service is not None:
            return self._instances([service], named=False)
        names = pages.read(self.store, [self.services_key()]).of(self.services_key())
        return self._instances(sorted(names), named=True)

    # ------------------------------------------------------------------ IndexedBackend

    async def find_services(self, keys: Iterable[tuple[str, str]]) -> set[str]:
        wanted = [self.index_key(kind, key) for kind, key in keys]

        def find() -> set[str]:
            listing = pages.read(self.store, wanted)
            return {name for key in wanted for name in listing.of(key)}

        found: set[str] = await self._run(find)
        return found

    async def instances_of(self, services: Sequence[str]) -> list[InstanceRecord]:
        found: list[InstanceRecord] = await self._run(self._instances, list(services), True)
        return found

    # ------------------------------------------------------------------ reading and tidying

    def _instances(self, services: list[str], named: bool) -> list[InstanceRecord]:
        """The live instances of `services`. Ids whose record memcached dropped are taken out
        of their pages; a service left with none is forgotten, when an index named it
        (`named`) or its ids were there (not for a mere look-up of an unknown name)."""
        ids = {s: self.ids_key(s) for s in services}
        listing = pages.read(self.store, ids.values())
        wanted = {
            self.record_key(s, i): (s, i, page)
            for s in services
            for i, page in listing.of(ids[s]).items()
        }
        found = self.records.read_many(list(wanted))
        now = time.time()
        live: list[InstanceRecord] = []
        present: set[str] = set()  # services with a record memcached still holds
        gone: dict[str, set[str]] = {}
        for key, (service, instance, page) in wanted.items():
            if key not in found:
                gone.setdefault(page, set()).add(instance)
                continue
            present.add(service)
            record = found[key]
            if (
                record is not None
                and record.expires_at >= now
                and (record.service, record.instance_id) == (service, instance)
            ):
                live.append(record)
        if gone:
            pages.remove(self.store, gone)
        for service in services:
            if service not in present and (named or ids[service] in listing.present):
                self._forget(service)
        return sorted(live, key=lambda r: (r.service, r.instance_id))

    def _forget(self, service: str) -> None:
        """Take a service with no instance left out of `services` and of every index naming
        it. Someone registering it meanwhile is in its ids before it adds the name back, so
        reading the ids again afterwards tells whether to put the name back at once."""
        decl, ids = self.decl_key(service), self.ids_key(service)
        indexes = sorted(pages.read(self.store, [decl]).of(decl))
        targets = [self.services_key(), *indexes]
        pages.remove(self.store, pages.pages_of(self.store, targets, service))
        back = pages.read(self.store, [ids]).of(ids)
        if back and self.store.get_many(self.record_key(service, i) for i in back):
            for key in targets:
                pages.add(self.store, key, service)
            return
        self.store.touch(decl, pages.EMPTY_TTL)  # what it declared is forgotten in a day

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.store.close)
