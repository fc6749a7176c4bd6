"""Compatibility of the services in a registry with each other, and of a starting service
with what is running. Modes, for a provider's new version against its live instances:

- backward (the default): old callers keep working: the new request schema accepts every old
  request, and every new response fits the old response schema;
- forward: callers written for the new version work with the old instances;
- full: both.

Callers' declared uses (`Service.uses`) and events (emitter declarations against listener
schemas) are checked in the direction data flows: what one side may send, the other must accept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jesus import event_names
from jesus.compat.report import INCOMPATIBLE, MISSING, Finding, Report
from jesus.compat.rules import accepts_all
from jesus.registry.base import InstanceRecord

MODES = ("backward", "forward", "full")


def _distinct(records: Iterable[InstanceRecord]) -> list[InstanceRecord]:
    """One record per distinct version of a service's declarations."""
    seen: dict[tuple[str, str], InstanceRecord] = {}
    for record in records:
        seen.setdefault((record.service, record.version), record)
    return list(seen.values())


def _pair(report: Report, writer: Any, reader: Any, where: str) -> None:
    report.checked += 1
    report.findings += accepts_all(writer, reader, where)


def check_uses(
    report: Report, records: list[InstanceRecord], involving: set[str] | None = None
) -> None:
    """Each caller's declared uses against the providers. `involving`: only the pairs with
    a caller or a provider among these services."""
    by_service: dict[str, list[InstanceRecord]] = {}
    for record in records:
        by_service.setdefault(record.service, []).append(record)
    for caller in _distinct(records):
        for target, use in sorted(caller.uses.items()):
            service, _, method = target.partition(".")
            if involving is not None and not {caller.service, service} & involving:
                continue
            providers = _distinct(by_service.get(service, []))
            if not providers:
                report.findings.append(
                    Finding(
                        MISSING,
                        f"{caller.service} -> {target}",
                        "(root)",
                        f"no live instance of {service}",
                    )
                )
                continue
            for provider in providers:
                declared = provider.methods.get(method)
                where = f"{caller.service} -> {target} ({provider.service} {provider.version})"
                if declared is None:
                    report.findings.append(
                        Finding(
                            INCOMPATIBLE,
                            where,
                            "(root)",
                            f"{provider.service} {provider.version} has no method {method}",
                        )
                    )
                    continue
                _pair(report, use.get("request", True), declared.request, f"{where} request")
                _pair(report, declared.response, use.get("response", True), f"{where} response")


def check_events(
    report: Report, records: list[InstanceRecord], involving: set[str] | None = None
) -> None:
    """Each emitter's event schemas against its listeners'. `involving`: only the pairs with
    an emitter or a listener among these services."""
    distinct = _distinct(records)
    listening = [r for r in distinct if r.listens]
    ours = [r for r in listening if involving is None or r.service in involving]
    for emitter in distinct:
        if not emitter.emits:
            continue
        mine = involving is None or emitter.service in involving
        for event, spec in sorted(emitter.emits.items()):
            for listener in listening if mine else ours:
                for pattern, lspec in sorted(listener.listens.items()):
                    if event_names.matches(pattern, event):
                        where = (
                            f"event {event}: {emitter.service} -> {listener.service} ({pattern})"
                        )
                        _pair(report, spec.get("schema", True), lspec.get("schema", True), where)


def check_versions(
    report: Report, new: InstanceRecord, live: list[InstanceRecord], mode: str
) -> None:
    for old in _distinct(
        r for r in live if r.service == new.service and r.instance_id != new.instance_id
    ):
        for name, old_method in sorted(old.methods.items()):
            where = f"{new.service} {old.version} -> {new.version} {name}"
            new_method = new.methods.get(name)
            if new_method is None:
                if mode in ("backward", "full"):
                    report.findings.append(
                        Finding(
                            INCOMPATIBLE, where, "(root)", "the new version removes this method"
                        )
                    )
                continue
            if mode in ("backward", "full"):
                _pair(
                    report, old_method.request, new_method.request, f"{where} request (old callers)"
                )
                _pair(
                    report,
                    new_method.response,
                    old_method.response,
                    f"{where} response (old callers)",
                )
            if mode in ("forward", "full"):
                _pair(
                    report, new_method.request, old_method.request, f"{where} request (new callers)"
                )
                _pair(
                    report,
                    old_method.response,
                    new_method.response,
                    f"{where} response (new callers)",
                )


def check_registry(records: list[InstanceRecord], mode: str = "backward") -> Report:
    """Everything running, checked against everything else (`jesus check`)."""
    report = Report()
    check_uses(report, records)
    check_events(report, records)
    latest: dict[str, InstanceRecord] = {}
    for record in sorted(records, key=lambda r: r.started_at):
        latest[record.service] = record
    for record in latest.values():
        check_versions(report, record, records, mode)
    return report


def check_start(
    new: list[InstanceRecord], live: list[InstanceRecord], mode: str = "backward"
) -> Report:
    """What `serve()` checks before registering `new`: the pairs that involve them (their
    uses and their callers', the events they emit and listen to, their other versions),
    against `live`, which need hold no more than those peers (jesus.registry.lookups)."""
    names = {r.service for r in new}
    ids = {r.instance_id for r in new}
    everyone = [r for r in live if r.instance_id not in ids] + new
    report = Report()
    check_uses(report, everyone, involving=names)
    check_events(report, everyone, involving=names)
    for record in new:
        check_versions(report, record, live, mode)
    return report
