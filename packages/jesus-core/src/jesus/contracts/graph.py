"""The system as a graph: services with their methods and events, and who uses what (the
`uses` declarations) and who listens to what (patterns matched against emitted events),
drawn as Mermaid or Graphviz DOT."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from jesus import event_names
from jesus.contracts.model import Contract
from jesus.errors import ConfigurationError


@dataclass
class Graph:
    # service -> its methods and their modes ("" for a used method no instance declares)
    services: dict[str, dict[str, str]] = field(default_factory=dict)
    events: set[str] = field(default_factory=set)  # emitted names and listened patterns
    uses: set[tuple[str, str]] = field(default_factory=set)  # (service, "svc.method")
    emits: set[tuple[str, str]] = field(default_factory=set)  # (service, event)
    listens: set[tuple[str, str]] = field(default_factory=set)  # (event or pattern, service)
    matches: set[tuple[str, str]] = field(default_factory=set)  # (event, pattern) it matches


def build(contracts: list[Contract]) -> Graph:
    g = Graph()
    for c in contracts:
        g.services[c.service] = {name: str(m.mode) for name, m in c.methods.items()}
        g.uses |= {(c.service, target) for target in c.uses}
        g.emits |= {(c.service, event) for event in c.emits}
        g.listens |= {(pattern, c.service) for pattern in c.listens}
    emitted = {event for _, event in g.emits}
    patterns = {pattern for pattern, _ in g.listens}
    g.events = emitted | patterns
    g.matches = {(e, p) for e in emitted for p in patterns if e != p and event_names.matches(p, e)}
    for target in {t for _, t in g.uses}:  # a used service that is not served
        service, _, method = target.partition(".")
        g.services.setdefault(service, {}).setdefault(method, "")
    return g


def _id(kind: str, name: str) -> str:
    return kind + "_" + "".join(ch if ch.isalnum() else f"_{ord(ch):x}_" for ch in name)


def _label(service: str, method: str, mode: str) -> str:
    return f"{service}.{method} [{mode or 'not served'}]"


def mermaid(contracts: list[Contract]) -> str:
    g = build(contracts)
    out = ["flowchart LR"]
    for service, methods in sorted(g.services.items()):
        out.append(f'    subgraph {_id("s", service)}["{service}"]')
        out += [
            f'        {_id("m", f"{service}.{m}")}["{_label(service, m, mode)}"]'
            for m, mode in sorted(methods.items())
        ]
        out.append("    end")
    out += [f'    {_id("e", e)}(["{e}"])' for e in sorted(g.events)]
    out += [f"    {_id('s', s)} -->|uses| {_id('m', t)}" for s, t in sorted(g.uses)]
    out += [f"    {_id('s', s)} -->|emits| {_id('e', e)}" for s, e in sorted(g.emits)]
    out += [f"    {_id('e', e)} -->|listened by| {_id('s', s)}" for e, s in sorted(g.listens)]
    out += [f"    {_id('e', e)} -.->|matches| {_id('e', p)}" for e, p in sorted(g.matches)]
    return "\n".join(out) + "\n"


def dot(contracts: list[Contract]) -> str:
    g = build(contracts)
    out = ["digraph jesus {", "    rankdir=LR;", "    node [fontname=Helvetica];"]
    for service, methods in sorted(g.services.items()):
        sid = _id("s", service)
        out.append(f"    subgraph cluster_{sid} {{")
        out.append(f'        label="{service}";')
        out.append(f'        {sid} [label="{service}", shape=box, style=bold];')
        out += [
            f'        {_id("m", f"{service}.{m}")} [label="{_label(service, m, mode)}", '
            f"shape=ellipse{'' if mode else ', style=dashed'}];"
            for m, mode in sorted(methods.items())
        ]
        out.append("    }")
    out += [f'    {_id("e", e)} [label="{e}", shape=note];' for e in sorted(g.events)]
    out += [f'    {_id("s", s)} -> {_id("m", t)} [label="uses"];' for s, t in sorted(g.uses)]
    out += [f'    {_id("s", s)} -> {_id("e", e)} [label="emits"];' for s, e in sorted(g.emits)]
    out += [
        f'    {_id("e", e)} -> {_id("s", s)} [label="listened by"];' for e, s in sorted(g.listens)
    ]
    out += [
        f'    {_id("e", e)} -> {_id("e", p)} [label="matches", style=dashed];'
        for e, p in sorted(g.matches)
    ]
    out.append("}")
    return "\n".join(out) + "\n"


def svg(contracts: list[Contract]) -> str:
    """The DOT graph laid out by Graphviz's `dot`."""
    binary = shutil.which("dot")
    if binary is None:
        raise ConfigurationError(
            "--format svg needs Graphviz's dot on PATH (apt-get install graphviz), "
            "or use --format dot or mermaid"
        )
    done = subprocess.run(
        [binary, "-Tsvg"], input=dot(contracts), capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise ConfigurationError(f"dot failed: {done.stderr.strip()}")
    return done.stdout
