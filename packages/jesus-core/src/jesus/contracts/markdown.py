"""A readable page per service: its methods with their modes and channels, the events it
emits and listens to, what it uses of other services, and every schema."""

from __future__ import annotations

import json
from typing import Any

from jesus.contracts.model import Contract


def markdown(contracts: list[Contract]) -> str:
    if not contracts:
        return "# Services\n\nNo services.\n"
    return "\n".join(_page(c) for c in contracts)


def _page(c: Contract) -> str:
    out = [f"# {c.service} {c.version}", ""]
    if c.description:
        out += [c.description, ""]
    if c.other_versions:
        out += [f"Also running: {', '.join(c.other_versions)}.", ""]
    if c.endpoints:
        out += ["Endpoints: " + ", ".join(f"`{url}`" for url in c.endpoints), ""]
    if c.methods:
        out += ["## Methods", "", "| method | mode | channels | sealed |", "|---|---|---|---|"]
        for name, m in sorted(c.methods.items()):
            channels = ", ".join(f"`{ch}`" for ch in m.channels)
            out.append(f"| `{c.service}.{name}` | {m.mode} | {channels} | {m.seal or ''} |")
        out.append("")
        for name, m in sorted(c.methods.items()):
            out += [f"### {c.service}.{name}", ""]
            if m.description:
                out += [m.description, ""]
            out += [f"Mode `{m.mode}`, over {', '.join(f'`{ch}`' for ch in m.channels)}.", ""]
            out += _schema("Request", m.request)
            if str(m.mode) in ("response", "stream"):
                label = "Each item" if str(m.mode) == "stream" else "Response"
                out += _schema(label, m.response)
    if c.emits:
        out += ["## Emits", "", "| event | mode |", "|---|---|"]
        out += [f"| `{e}` | {s.get('mode', 'noResponse')} |" for e, s in sorted(c.emits.items())]
        out.append("")
        for event, spec in sorted(c.emits.items()):
            out += [f"### emits {event}", "", *_schema("Data", spec.get("schema"))]
    if c.listens:
        out += ["## Listens", "", "| pattern | group | channels |", "|---|---|---|"]
        for pattern, spec in sorted(c.listens.items()):
            listed = spec.get("channels") or [spec.get("channel")]
            shown = ", ".join(f"`{ch}`" for ch in listed)
            out.append(f"| `{pattern}` | {spec.get('group', c.service)} | {shown} |")
        out.append("")
        for pattern, spec in sorted(c.listens.items()):
            out += [f"### listens {pattern}", "", *_schema("Data", spec.get("schema"))]
    if c.uses:
        out += ["## Uses", ""]
        out += [f"- `{target}`" for target in sorted(c.uses)]
        out.append("")
    return "\n".join(out)


def _schema(label: str, schema: Any) -> list[str]:
    if schema is True or schema == {}:
        return [f"{label}: any value.", ""]
    return [f"{label}:", "", "```json", json.dumps(schema, indent=2), "```", ""]
