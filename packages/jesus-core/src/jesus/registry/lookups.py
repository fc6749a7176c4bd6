"""Targeted look-ups in a registry: the listeners of an event, and what a starting service
must be checked against. A backend that keeps indexes answers them from a few keys (it has
`find_services` and `instances_of`, see `IndexedBackend`); any other is listed whole and
filtered, which costs what the whole registry costs.

The indexes map a key to the services whose records name it (PROTOCOL.md, "Registry
records"): `listens` a listener pattern, `emits` each pattern an emitted event matches, `uses`
the service whose methods are called. An index may still name a service that no longer
declares the key (until the name is forgotten): readers check the records they get.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jesus import event_names
from jesus.registry.base import InstanceRecord

KINDS = ("listens", "emits", "uses")


def index_keys(record: InstanceRecord) -> dict[str, set[str]]:
    """The keys under which `record`'s service is indexed, per kind."""
    return {
        "listens": set(record.listens),
        "emits": {p for event in record.emits for p in event_names.patterns_matching(event)},
        "uses": {target.partition(".")[0] for target in record.uses},
    }


def is_indexed(backend: Any) -> bool:
    return hasattr(backend, "find_services") and hasattr(backend, "instances_of")


def listens_to(record: InstanceRecord, event: str) -> bool:
    return any(event_names.matches(pattern, event) for pattern in record.listens)


async def listening(backend: Any, event: str) -> list[InstanceRecord]:
    """Live instances with a listener that matches `event`."""
    if is_indexed(backend):
        keys = [("listens", p) for p in event_names.patterns_matching(event)]
        names = await backend.find_services(keys)
        found: list[InstanceRecord] = await backend.instances_of(sorted(names)) if names else []
    else:
        found = await backend.list_instances()
    return [r for r in found if listens_to(r, event)]


def _related_keys(new: Iterable[InstanceRecord]) -> list[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for record in new:
        keys.add(("uses", record.service))  # its callers
        for event in record.emits:  # the listeners of what it emits
            keys.update(("listens", p) for p in event_names.patterns_matching(event))
        keys.update(("emits", p) for p in record.listens)  # the emitters of what it hears
    return sorted(keys)


async def related(backend: Any, new: list[InstanceRecord]) -> list[InstanceRecord]:
    """The live instances `check_start` compares `new` with: other instances (versions) of
    their services, the providers they use, the callers that use them, the listeners of what
    they emit and the emitters of what they listen to."""
    if not is_indexed(backend):
        everyone: list[InstanceRecord] = await backend.list_instances()
        return everyone
    names = {r.service for r in new}
    names |= {target.partition(".")[0] for r in new for target in r.uses}
    names |= set(await backend.find_services(_related_keys(new)))
    found: list[InstanceRecord] = await backend.instances_of(sorted(names))
    return found
