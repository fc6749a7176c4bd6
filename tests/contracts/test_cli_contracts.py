"""`jesus docs` and `jesus graph` as a user runs them: from a module, and from a registry
that a running system (real sockets) registered in."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import anyio
import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.contracts import system
from tests.contracts.documents import asyncapi_errors, dangling_refs

ROOT = Path(__file__).resolve().parents[2]
JESUS = [sys.executable, "-m", "jesus"]
MODULE = "tests.contracts.system:services"
SVG = "http://www.w3.org/2000/svg"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JESUS_")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JESUS, *args], capture_output=True, text=True, timeout=60, env=_env(**env), cwd=ROOT
    )


def run_all(*commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """`run` each of `commands`, all at once: they do not depend on one another, and each
    spends most of its time starting Python."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run(*args), commands))


async def arun(*args: str) -> str:
    done = await anyio.run_process([*JESUS, *args], env=_env(), cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def mermaid_edges(text: str) -> set[tuple[str, str, str]]:
    return set(re.findall(r"^\s+(\w+) -\.?->\|([^|]+)\| (\w+)$", text, re.M))


def dot_edges(text: str) -> set[tuple[str, str, str]]:
    found = re.findall(r'^\s+(\w+) -> (\w+) \[label="([^"]+)"', text, re.M)
    return {(source, label, target) for source, target, label in found}


def svg_texts(text: str) -> set[str]:
    """The text of an SVG document's <text> elements; fails unless it is well-formed SVG."""
    root = ElementTree.fromstring(text)
    assert root.tag == f"{{{SVG}}}svg"
    return {node.text or "" for node in root.iter(f"{{{SVG}}}text")}


EDGES = {
    ("s_billing", "uses", "m_shop_2e_order"),
    ("s_shop", "emits", "e_order_2e_created"),
    ("s_shop", "emits", "e_order_2e_cancelled"),
    ("e_order_2e_created", "listened by", "s_audit"),
    ("e_order_2e__2a_", "listened by", "s_billing"),
    ("e_order_2e_created", "matches", "e_order_2e__2a_"),
    ("e_order_2e_cancelled", "matches", "e_order_2e__2a_"),
}


# The commands under test run in processes of their own and read only the registry, which
# is the same whatever loop served it: one backend is enough.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_docs_and_graph_from_the_registry_of_a_running_system(
    running: Callable[..., Any], registry: str, anyio_backend: str
) -> None:
    async with running(*system.build()) as (node, _):
        source = ("--registry", registry)
        commands = {
            "openapi": ("docs", "openapi"),
            "asyncapi": ("docs", "asyncapi"),
            "mermaid": ("graph",),
            "dot": ("graph", "--format", "dot"),
            "svg": ("graph", "--format", "svg"),
        }
        out: dict[str, str] = {}

        async def into(name: str) -> None:
            out[name] = await arun(*commands[name], *source)

        # svg is laid out by the real Graphviz (scripts/system-deps installs it).
        assert shutil.which("dot"), "the tests need Graphviz's dot: bash scripts/system-deps"
        async with anyio.create_task_group() as tg:  # independent: all at once
            for name in commands:
                tg.start_soon(into, name)
        spec = json.loads(out["openapi"])
        validate_openapi(spec)
        assert spec["servers"] == [{"url": node.endpoints["http"]}]
        assert "/shop/order" in spec["paths"] and "/billing/invoice" not in spec["paths"]

        events = json.loads(out["asyncapi"])
        assert asyncapi_errors(events) == [] and dangling_refs(events) == []
        protocols = {(s["title"], s["protocol"]) for s in events["servers"].values()}
        assert {("shop over http", "http"), ("shop over tcp", "tcp")} <= protocols
        # a method's channel lists only the servers of its transports
        servers = [
            events["servers"][r["$ref"].rsplit("/", 1)[1]]
            for r in events["channels"]["shop.catalog"]["servers"]
        ]
        assert [s["protocol"] for s in servers] == ["http"]

        mermaid = out["mermaid"]
        assert mermaid.startswith("flowchart LR\n")
        assert mermaid_edges(mermaid) == EDGES
        shop = mermaid[mermaid.index('subgraph s_shop["shop"]') :].split("    end", 1)[0]
        assert 'm_shop_2e_catalog["shop.catalog [stream]"]' in shop
        assert 'm_shop_2e_cancel["shop.cancel [ack]"]' in shop

        graph = out["dot"]
        assert graph.startswith("digraph jesus {") and graph.rstrip().endswith("}")
        assert graph.count("{") == graph.count("}")
        assert dot_edges(graph) == EDGES
        assert re.search(r"subgraph cluster_s_billing \{[^}]*m_billing_2e_invoice", graph)

        # Laid out by the real Graphviz.
        drawn = svg_texts(out["svg"])
        assert {"shop", "billing", "audit"} <= drawn
        assert {"shop.catalog [stream]", "order.created", "order.*", "listened by"} <= drawn


def test_docs_from_a_module_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "shop.md"
    done, titled = run_all(
        ("docs", "markdown", MODULE, "-o", str(out)),
        ("docs", "asyncapi", MODULE, "--title", "Shop"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert out.read_text().startswith("# shop 2.1.0\n")
    assert json.loads(titled.stdout)["info"]["title"] == "Shop"


def test_config_moves_a_channel_in_the_contract(tmp_path: Path) -> None:
    config = tmp_path / "jesus.toml"
    config.write_text('[channels.shop]\nlog = "http+json"\n')
    before, after = (
        json.loads(done.stdout)
        for done in run_all(
            ("docs", "openapi", MODULE), ("docs", "openapi", MODULE, "--config", str(config))
        )
    )
    assert "/shop/log" not in before["paths"] and "/shop/log" in after["paths"]


def test_failures_are_one_line(tmp_path: Path) -> None:
    empty, wrong, unwritable = run_all(
        ("docs", "openapi", "--registry", f"embedded://{tmp_path / 'none'}"),
        ("graph", "tests.contracts.system"),
        ("docs", "markdown", MODULE, "-o", str(tmp_path / "no" / "such.md")),
    )
    assert empty.returncode == 2
    assert empty.stderr.startswith("jesus: no live services in embedded://")
    assert len(empty.stderr.splitlines()) == 1

    assert wrong.returncode == 2 and "must be MODULE:ATTR" in wrong.stderr

    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr


def test_svg_needs_graphviz(tmp_path: Path) -> None:
    no_dot = run("graph", MODULE, "--format", "svg", PATH=str(tmp_path))
    assert no_dot.returncode == 1
    assert no_dot.stderr.splitlines() == [
        "jesus: --format svg needs Graphviz's dot on PATH (apt-get install graphviz), "
        "or use --format dot or mermaid"
    ]
    # A stand-in for Graphviz: what `jesus graph` hands it, and what it makes of its answer.
    fake = tmp_path / "dot"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = "-Tsvg" ] || exit 3\n'
        'echo "<svg><!-- $(grep -c -- "->" ) edges --></svg>"\n'
    )
    fake.chmod(0o755)
    drawn = run("graph", MODULE, "--format", "svg", PATH=f"{tmp_path}:{os.environ['PATH']}")
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout == f"<svg><!-- {len(EDGES)} edges --></svg>\n"
    fake.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 1\n")
    broken = run("graph", MODULE, "--format", "svg", PATH=f"{tmp_path}:{os.environ['PATH']}")
    assert broken.returncode == 1 and broken.stderr == "jesus: dot failed: syntax error in line 1\n"
