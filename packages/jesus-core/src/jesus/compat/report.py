from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

INCOMPATIBLE = "incompatible"
UNDECIDABLE = "undecidable"
MISSING = "missing"


@dataclass(frozen=True)
class Finding:
    """One problem: `kind` is incompatible (a message that validates on one side will be
    refused on the other: `witness` is one, as JSON text, checked with both validators),
    undecidable (the rules cannot tell; the message names the keyword; checked by hand), or
    missing (a dependency has no live provider)."""

    kind: str
    where: str  # e.g. "orders -> billing.charge request"
    path: str  # JSON pointer inside the schema, "(root)" for the whole
    message: str
    witness: str | None = None

    @property
    def instance(self) -> Any:
        """The witness as a value (None when there is none: see `witness`)."""
        return None if self.witness is None else json.loads(self.witness)

    def __str__(self) -> str:
        text = f"{self.kind.upper():<12} {self.where} at {self.path}: {self.message}"
        if self.witness is not None:
            text += f"\n             e.g. the writer may send {_short(self.witness)}"
        return text


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class Issue:
    """A finding on its way up the comparison: `witness` is a 1-tuple holding an instance the
    writer's subschema accepts and the reader's refuses (a tuple, since null is an instance),
    or None."""

    kind: str
    path: str
    message: str
    witness: tuple[Any] | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0  # schema pairs compared

    @property
    def incompatible(self) -> list[Finding]:
        return [f for f in self.findings if f.kind == INCOMPATIBLE]

    @property
    def ok(self) -> bool:
        return not self.incompatible

    def text(self) -> str:
        lines = [str(f) for f in self.findings]
        verdict = "compatible" if self.ok else f"{len(self.incompatible)} incompatibilities"
        lines.append(f"{self.checked} schema pairs checked: {verdict}")
        return "\n".join(lines)
