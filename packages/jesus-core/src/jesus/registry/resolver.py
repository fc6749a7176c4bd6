"""Caller-side view of the registry: cached look-ups, spreading calls over instances, and
stepping around instances that just failed.

The registry never stalls a call that has a route:

- A cached entry older than `refresh` is still handed out at once, and one refresh per key
  starts in the background (in the task group of the client the resolver is bound to). Only a
  key never seen waits for the registry, and never longer than `timeout`.
- A sudden "no instances" for a service that was listed a moment ago is suspect (a registry
  restarted empty, a flush): its cached records are kept until their own `expires_at`, then
  the empty answer is believed. A kept record whose instance cannot be reached is dropped.
- Every registry operation is bounded by `timeout` (`bounded`) and fails with RegistryError.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from jesus.errors import JesusError, RegistryError, ServiceNotFound
from jesus.registry import lookups
from jesus.registry.base import InstanceRecord, RegistryBackend
from jesus.routing.health import Ejection, HealthBook

log = logging.getLogger("jesus.registry")
T = TypeVar("T")
# A cache key: a service, None for everyone, or ("listens", event) for an event's listeners.
Key = str | tuple[str, str] | None
# Events whose listeners a resolver keeps cached (event names are the caller's).
MAX_EVENTS = 1024


async def bounded(timeout: float, what: str, op: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`await op(*args)`, or RegistryError once `timeout` seconds have passed.

    A backend that blocks in a worker thread is only interrupted when the thread returns, so
    such a backend bounds its own operations too (memcached: its socket timeouts). Whatever
    else a backend raises is a RegistryError too: its client library's own bugs (pymemcache
    reading a socket closed under it) must not stop a caller or a heartbeat."""
    with anyio.move_on_after(timeout):
        try:
            return await op(*args)
        except JesusError:
            raise
        except Exception as exc:
            raise RegistryError(
                f"the registry failed ({what}): {type(exc).__name__}: {exc}"
            ) from exc
    raise RegistryError(f"the registry did not answer ({what}) within {timeout:g}s")


class _Flight:
    """A cold look-up under way, whose answer the callers waiting for it share."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: list[InstanceRecord] | None = None
        self.error: RegistryError | None = None


class Resolver:
    def __init__(
        self,
        backend: RegistryBackend,
        refresh: float = 2.0,
        penalty: float = 5.0,
        timeout: float = 2.0,
        prefer_host: str | None = None,
        ejection: Ejection | None = None,
    ) -> None:
        self.backend = backend
        # What callers learn of each instance: load, latency, circuit breaking and outlier
        # ejection (`penalty` is the first ejection of an instance that cannot be reached).
        self.health = HealthBook(ejection or Ejection(ejection=penalty))
        # Instances on this host (a record's `host`) go first: the node daemon's own.
        self.prefer_host = prefer_host
        self.refresh = refresh
        self.penalty = penalty
        self.timeout = timeout
        # key -> (monotonic time of the answer, records)
        self._cache: dict[Key, tuple[float, list[InstanceRecord]]] = {}
        # event -> (the list of everyone it was picked from, its listeners): for backends
        # without indexes
        self._picked: dict[str, tuple[list[InstanceRecord], list[InstanceRecord]]] = {}
        self._rr: dict[str, Any] = {}
        self._flights: dict[Key, _Flight] = {}  # one cold look-up per key
        self._refreshing: set[Key] = set()  # one background refresh per key
        self._scopes: set[anyio.CancelScope] = set()
        self._tg: TaskGroup | None = None
        self._suspect: set[str] = set()  # instance ids kept although the registry lost them
        self._outage_logged = False

    def bind(self, tg: TaskGroup) -> None:
        """Run background refreshes in `tg` (the owning client's, for its lifetime). Unbound,
        a stale entry is refreshed inline, within `timeout`."""
        self._tg = tg

    def unbind(self, tg: TaskGroup | None) -> None:
        """Stop refreshing in `tg`, and cancel the refreshes under way there."""
        if tg is not None and self._tg is tg:
            self._tg = None
            for scope in self._scopes:
                scope.cancel()

    async def everyone(self) -> list[InstanceRecord]:
        """Every live instance of every service (to find an event's listeners), cached."""
        return await self.instances(None)

    async def listeners(self, event: str) -> list[InstanceRecord]:
        """The live instances with a listener matching `event`, cached like a service's. A
        backend with indexes is asked for just those (a few keys, whatever the size of the
        registry); any other is listed whole, once for every event."""
        if lookups.is_indexed(self.backend):
            return await self.instances(("listens", event))
        everyone = await self.everyone()
        picked = self._picked.get(event)
        if picked is None or picked[0] is not everyone:
            if len(self._picked) >= MAX_EVENTS:
                self._picked.clear()
            found = [r for r in everyone if lookups.listens_to(r, event)]
            picked = self._picked[event] = (everyone, found)
        return picked[1]

    def fresh(self, service: Key) -> list[InstanceRecord] | None:
        """The instances of `service` when they are known and fresh, without a wait; None
        when `instances()` must look them up or refresh them."""
        cached = self._cache.get(service)
        if cached is None or time.monotonic() - cached[0] >= self.refresh:
            return None
        return cached[1]

    async def instances(self, service: Key) -> list[InstanceRecord]:
        cached = self._cache.get(service)
        if cached is None:
            return await self._cold(service)
        if time.monotonic() - cached[0] >= self.refresh and service not in self._refreshing:
            self._refreshing.add(service)
            if self._tg is not None:
                self._tg.start_soon(self._refresh, service)
            else:  # no task group to refresh in: inline, within `timeout`
                await self._refresh(service)
                return self._cache.get(service, cached)[1]
        return cached[1]

    async def _cold(self, key: Key) -> list[InstanceRecord]:
        """The first look-up of `key`: callers arriving meanwhile share its answer."""
        while (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.error is not None:
                raise RegistryError(str(flight.error)) from flight.error
            if flight.result is not None:
                return flight.result
            # the caller looking it up was cancelled: look it up ourselves
        cached = self._cache.get(key)
        if cached is not None:
            return cached[1]
        flight = self._flights[key] = _Flight()
        try:
            flight.result = await self._fetch(key)
            return flight.result
        except RegistryError as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()

    async def _refresh(self, key: Key) -> None:
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        try:
            with scope:
                before = self._cache.get(key)
                if before is None:
                    return
                try:
                    await self._fetch(key)
                except RegistryError as exc:
                    if not (self._outage_logged or scope.cancel_called):
                        log.warning("registry unavailable, using cached instances: %s", exc)
                        self._outage_logged = True
                    current = self._cache.get(key)
                    if current is not None and current[1] is before[1]:
                        # try again after `refresh`, not at every call
                        self._cache[key] = (time.monotonic(), current[1])
        finally:
            self._scopes.discard(scope)
            self._refreshing.discard(key)

    async def _fetch(self, key: Key) -> list[InstanceRecord]:
        if isinstance(key, tuple):
            found = await bounded(self.timeout, "listing", lookups.listening, self.backend, key[1])
        else:
            found = await bounded(self.timeout, "listing", self.backend.list_instances, key)
        self._outage_logged = False
        previous = self._cache.get(key)
        if previous is not None:
            found = self._keep_vanished(previous[1], found)
        elif (
            isinstance(key, tuple) and sum(isinstance(k, tuple) for k in self._cache) >= MAX_EVENTS
        ):
            for old in [k for k in self._cache if isinstance(k, tuple)]:
                del self._cache[old]  # keep the memory bounded
        self._cache[key] = (time.monotonic(), found)
        return found

    def _keep_vanished(
        self, before: list[InstanceRecord], found: list[InstanceRecord]
    ) -> list[InstanceRecord]:
        """Records of services the answer suddenly lists no instance of, kept until their TTL
        would have run out: a registry that restarted empty says "none" for live services."""
        listed = {r.service for r in found}
        now = time.time()
        kept = [r for r in before if r.service not in listed and r.expires_at > now]
        self._suspect -= {r.instance_id for r in before} - {r.instance_id for r in kept}
        if not kept:
            return found
        for record in kept:
            if record.instance_id not in self._suspect:
                self._suspect.add(record.instance_id)
                log.warning(
                    "the registry no longer lists %s@%s; still using it until its record "
                    "would have expired (in %.1fs)",
                    record.service,
                    record.instance_id,
                    record.expires_at - now,
                )
        return found + kept

    async def pick(self, service: str, rotate: bool = True) -> list[InstanceRecord]:
        """Live instances of `service`, rotated (once per call) so calls spread, ejected ones
        last. (A Client orders each call's instances with its strategy instead.)"""
        found = await self.instances(service)
        if not found:
            self._cache.pop(service, None)
            raise ServiceNotFound(f"no live instance of service {service!r} in the registry")
        if len(found) == 1:
            return found
        counter = self._rr.setdefault(service, itertools.count())
        start = (next(counter) if rotate else 0) % len(found)
        ordered = found[start:] + found[:start]
        if self.prefer_host is not None:
            here = self.prefer_host
            ordered = [r for r in ordered if r.host == here] + [
                r for r in ordered if r.host != here
            ]
        now = time.monotonic()
        ejected = [r for r in ordered if self.health.is_ejected(r.instance_id, now)]
        if not ejected:
            return ordered
        return [r for r in ordered if r not in ejected] + ejected

    def mark_failed(self, record: InstanceRecord) -> None:
        """`record`'s instance could not be reached: eject it (tried last, for `penalty`
        seconds at first), and refresh its service (in the background: the cached route
        still serves). One the registry no longer lists (kept on suspicion) is dropped."""
        self.health.unreachable(record.instance_id)
        if record.instance_id in self._suspect:
            self._suspect.discard(record.instance_id)
            gone = record.instance_id
            for key, (at, records) in list(self._cache.items()):
                if any(r.instance_id == gone for r in records):
                    left = [r for r in records if r.instance_id != gone]
                    if left:
                        self._cache[key] = (at, left)
                    else:  # the next call looks it up again
                        del self._cache[key]
        cached = self._cache.get(record.service)
        if cached is not None:
            self._cache[record.service] = (float("-inf"), cached[1])

    def forget(self, service: str | None = None) -> None:
        if service is None:
            self._cache.clear()
        else:
            self._cache.pop(service, None)
