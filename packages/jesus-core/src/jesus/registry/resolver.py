"""Caller-side view of the registry: cached look-ups, spreading calls over instances, and
stepping around instances that just failed."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import anyio

from jesus.errors import RegistryError, ServiceNotFound
from jesus.registry.base import InstanceRecord, RegistryBackend

log = logging.getLogger("jesus.registry")


class Resolver:
    def __init__(
        self, backend: RegistryBackend, refresh: float = 2.0, penalty: float = 5.0
    ) -> None:
        self.backend = backend
        self.refresh = refresh
        self.penalty = penalty
        self._cache: dict[str | None, tuple[float, list[InstanceRecord]]] = {}
        self._rr: dict[str, Any] = {}
        self._bad: dict[str, float] = {}
        self._lock = anyio.Lock()
        self._outage_logged = False

    async def everyone(self) -> list[InstanceRecord]:
        """Every live instance of every service (to find an event's listeners), cached."""
        return await self.instances(None)

    async def instances(self, service: str | None) -> list[InstanceRecord]:
        now = time.monotonic()
        cached = self._cache.get(service)
        if cached is not None and now - cached[0] < self.refresh:
            return cached[1]
        async with self._lock:
            cached = self._cache.get(service)
            if cached is not None and time.monotonic() - cached[0] < self.refresh:
                return cached[1]
            try:
                found = await self.backend.list_instances(service)
            except RegistryError as exc:
                if cached is None:
                    raise
                if not self._outage_logged:
                    log.warning("registry unavailable, using cached instances: %s", exc)
                    self._outage_logged = True
                return cached[1]
            self._outage_logged = False
            self._cache[service] = (time.monotonic(), found)
            return found

    async def pick(self, service: str, rotate: bool = True) -> list[InstanceRecord]:
        """Live instances of `service`, rotated (once per call) so calls spread, recently
        failed ones last."""
        found = await self.instances(service)
        if not found:
            self._cache.pop(service, None)
            raise ServiceNotFound(f"no live instance of service {service!r} in the registry")
        if len(found) == 1:
            return found
        counter = self._rr.setdefault(service, itertools.count())
        start = (next(counter) if rotate else 0) % len(found)
        ordered = found[start:] + found[:start]
        if not self._bad:
            return ordered
        now = time.monotonic()
        for instance_id, until in list(self._bad.items()):
            if until <= now:
                del self._bad[instance_id]
        good = [r for r in ordered if r.instance_id not in self._bad]
        bad = [r for r in ordered if r.instance_id in self._bad]
        return good + bad

    def mark_failed(self, record: InstanceRecord) -> None:
        self._bad[record.instance_id] = time.monotonic() + self.penalty
        self._cache.pop(record.service, None)

    def forget(self, service: str | None = None) -> None:
        if service is None:
            self._cache.clear()
        else:
            self._cache.pop(service, None)
