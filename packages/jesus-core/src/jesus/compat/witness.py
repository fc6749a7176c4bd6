"""Witnesses: an instance the writer's schema accepts and the reader's refuses.

A rule that finds a difference asks `search` for one; a difference found inside a property or
an item is carried up by `in_object` / `in_array`, which build the enclosing instance. At the
top, `verified` checks each witness against both schemas as declared, with the validator of
each schema's own draft; a finding whose witness does not hold is not an incompatibility.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jesus.compat.drafts import Schema
from jesus.compat.examples import examples, first_valid, valid_examples
from jesus.compat.report import INCOMPATIBLE, UNDECIDABLE, Issue
from jesus.compat.resolve import Context


def search(
    writer: Schema, probe: Schema, cx: Context, extra: Iterable[Any] = ()
) -> tuple[Any] | None:
    """An instance valid under `writer` (a writer subschema) and invalid under `probe` (a
    reader subschema, or one keyword of it)."""
    for value in [*extra, *examples(writer, cx.writer, limit=60)]:
        if cx.writer.valid(writer, value) is True and cx.reader.valid(probe, value) is False:
            return (value,)
    return None


def refuted(
    path: str, message: str, writer: Schema, probe: Schema, cx: Context, extra: Iterable[Any] = ()
) -> Issue:
    """An incompatibility if an instance shows it, else undecidable with the same reason."""
    found = search(writer, probe, cx, extra)
    if found is None:
        return Issue(UNDECIDABLE, path, f"{message}; no instance was found that shows it")
    return Issue(INCOMPATIBLE, path, message, found)


def in_object(issues: list[Issue], writer: Schema, name: str, cx: Context) -> list[Issue]:
    """`issues` found at property `name`, their witnesses placed in a writer object."""
    if not any(issue.witness is not None for issue in issues):
        return issues
    bases = [v for v in valid_examples(writer, cx.writer, limit=12) if isinstance(v, dict)]
    for issue in issues:
        if issue.witness is None:
            continue
        value = issue.witness[0]
        candidates = [{**base, name: value} for base in bases]
        candidates.append({name: value})
        issue.witness = next(
            ((c,) for c in candidates if cx.writer.valid(writer, c) is True), (candidates[0],)
        )
    return issues


def in_array(issues: list[Issue], writer: Schema, index: int, cx: Context) -> list[Issue]:
    """`issues` found at item `index`, their witnesses placed in a writer array."""
    prefix = writer.get("prefixItems", []) if isinstance(writer, dict) else []
    rest = writer.get("items", True) if isinstance(writer, dict) else True
    head: list[Any] = []
    for i in range(index):
        found = first_valid(prefix[i] if i < len(prefix) else rest, cx.writer)
        head.append(found[0] if found is not None else None)
    for issue in issues:
        if issue.witness is not None:
            value = issue.witness[0]
            candidates = [[*head, value], [*head, value, value]]
            issue.witness = next(
                ((c,) for c in candidates if cx.writer.valid(writer, c) is True), (candidates[0],)
            )
    return issues


def verified(issue: Issue, cx: Context) -> Issue:
    """`issue`, unless it claims an incompatibility its witness does not show at the top."""
    if issue.kind != INCOMPATIBLE:
        return issue
    if issue.witness is not None:
        value = issue.witness[0]
        if cx.writer.valid_raw(value) is True and cx.reader.valid_raw(value) is False:
            return issue
    return Issue(UNDECIDABLE, issue.path, f"{issue.message}; no instance was found that shows it")
