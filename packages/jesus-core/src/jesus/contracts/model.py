"""What the generators read: one service's declarations, whether they come from a Service
object or from the registry's records of its live instances."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from jesus.channel import ChannelSpec
from jesus.registry.base import InstanceRecord, MethodRecord
from jesus.runtime.service import Service

# PROTOCOL.md "Errors": what an ERROR carries.
ERROR_OBJECT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "corrid": {"type": "string"},
        "details": {},
    },
    "required": ["code", "message"],
}


@dataclass(frozen=True)
class Contract:
    service: str
    version: str
    description: str = ""
    methods: dict[str, MethodRecord] = field(default_factory=dict)
    listens: dict[str, dict[str, Any]] = field(default_factory=dict)  # pattern -> record
    emits: dict[str, dict[str, Any]] = field(default_factory=dict)  # event -> record
    uses: dict[str, dict[str, Any]] = field(default_factory=dict)  # "service.method" -> schemas
    endpoints: tuple[str, ...] = ()  # where live instances listen (registry only)
    other_versions: tuple[str, ...] = ()  # also running, not described here

    def transports_of(self, channels: Iterable[str]) -> list[str]:
        return sorted({ChannelSpec.parse(c).transport for c in channels})


def from_services(services: Iterable[Service]) -> list[Contract]:
    return [
        Contract(
            service=s.name,
            version=s.version,
            description=s.description,
            methods={name: spec.record() for name, spec in s.methods.items()},
            listens={event: spec.record() for event, spec in s.listeners.items()},
            emits={event: spec.record() for event, spec in s.emits.items()},
            uses={target: dict(schemas) for target, schemas in s.uses.items()},
        )
        for s in services
    ]


def from_records(records: Iterable[InstanceRecord]) -> list[Contract]:
    """One contract per service, at the newest version running (its instances' endpoints
    together); the other versions are named."""
    by_service: dict[str, list[InstanceRecord]] = {}
    for record in records:
        by_service.setdefault(record.service, []).append(record)
    contracts = []
    for name in sorted(by_service):
        instances = by_service[name]
        newest = max(instances, key=lambda r: (version_key(r.version), r.started_at))
        same = [r for r in instances if r.version == newest.version]
        endpoints = sorted({url for r in same for url in r.endpoints.values()})
        others = sorted({r.version for r in instances} - {newest.version}, key=version_key)
        contracts.append(
            Contract(
                service=name,
                version=newest.version,
                methods=dict(newest.methods),
                listens=dict(newest.listens),
                emits=dict(newest.emits),
                uses=dict(newest.uses),
                endpoints=tuple(endpoints),
                other_versions=tuple(others),
            )
        )
    return contracts


def version_key(version: str) -> tuple[tuple[int, str], ...]:
    """Orders `1.10.0` after `1.9.2`; parts that are not numbers compare as text."""
    return tuple(
        (int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.+-]", version)
    )


def open_schema(schema: Any) -> Any:
    """A schema as a document can embed it: `true` is `{}`, `false` matches nothing."""
    if schema is True:
        return {}
    if schema is False:
        return {"not": {}}
    return schema


def relocated(schema: Any, base: str) -> Any:
    """`schema` as a document embeds it at `base`: its own `#...` references point under
    `base`, so `$defs` and `definitions` still resolve; its `$schema` and `$id` go (the
    document's dialect and base apply)."""
    schema = open_schema(schema)
    if isinstance(schema, dict):
        schema = {k: v for k, v in schema.items() if k not in ("$schema", "$id")}
    return _refs_under(schema, base)


def _refs_under(value: Any, base: str) -> Any:
    if isinstance(value, dict):
        return {
            k: base + v[1:]
            if k == "$ref" and isinstance(v, str) and v.startswith("#")
            else _refs_under(v, base)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_refs_under(item, base) for item in value]
    return value


def key_of(name: str) -> str:
    """A name as a document's component key (letters, digits, `.`, `-`, `_`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)
