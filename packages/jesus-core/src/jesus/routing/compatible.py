"""Routing by compatibility: a caller that declared what it uses of a method
(`Service.use`, `Client(uses=...)`) is sent only to instances whose published schemas fit it,
by the rules of docs/compatibility.md: every request the caller may send must be accepted by
the instance's request schema, and every answer the instance may give must fit the response
the caller expects. During a rolling upgrade the caller keeps to the versions it works with.

A verdict is worked out once per instance and method (it takes milliseconds) and kept while
the instance publishes the same declaration.
"""

from __future__ import annotations

from typing import Any

from jesus.compat.report import INCOMPATIBLE
from jesus.compat.rules import accepts_all
from jesus.registry.base import InstanceRecord, MethodRecord

MAX_VERDICTS = 4096


class CompatibilityFilter:
    def __init__(self) -> None:
        # (instance, method, id of the use) -> (the use, the method record, refusal or "")
        self._verdicts: dict[tuple[str, str, int], tuple[Any, MethodRecord, str]] = {}

    def refusal(
        self, use: dict[str, Any], record: InstanceRecord, name: str, method: MethodRecord
    ) -> str:
        """Why `record`'s `method` does not fit `use`, or "" when it does."""
        key = (record.instance_id, name, id(use))
        seen = self._verdicts.get(key)
        if seen is not None and seen[0] is use and seen[1] is method:
            return seen[2]
        where = f"{record.service} {record.version} ({record.instance_id}) {name}"
        findings = accepts_all(use.get("request", True), method.request, f"{where} request")
        findings += accepts_all(method.response, use.get("response", True), f"{where} response")
        refused = [f for f in findings if f.kind == INCOMPATIBLE]
        verdict = (
            "" if not refused else f"{refused[0].where} at {refused[0].path}: {refused[0].message}"
        )
        if len(self._verdicts) >= MAX_VERDICTS:
            self._verdicts.clear()
        self._verdicts[key] = (use, method, verdict)
        return verdict
