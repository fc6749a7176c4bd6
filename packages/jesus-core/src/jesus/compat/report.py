from __future__ import annotations

from dataclasses import dataclass, field

INCOMPATIBLE = "incompatible"
UNDECIDABLE = "undecidable"
MISSING = "missing"


@dataclass(frozen=True)
class Finding:
    """One problem: `kind` is incompatible (a message that validates on one side will be
    refused on the other), undecidable (the rules cannot tell; checked by hand), or missing
    (a dependency has no live provider)."""

    kind: str
    where: str  # e.g. "orders -> billing.charge request"
    path: str  # JSON pointer inside the schema, "(root)" for the whole
    message: str

    def __str__(self) -> str:
        return f"{self.kind.upper():<12} {self.where} at {self.path}: {self.message}"


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
