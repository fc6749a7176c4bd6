"""The layering of docs/architecture.md, checked on the source: a layer imports only those
below it, so that transports stay independent of the runtime that uses them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "packages"
CORE = ROOT / "jesus-core" / "src" / "jesus"


def imported(path: Path) -> set[str]:
    """Every module a file imports, type-checking-only imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def sources(*patterns: str) -> list[Path]:
    return [path for pattern in patterns for path in ROOT.glob(pattern)]


LAYERS = {
    # files: the packages they must never import
    "transport plugins": (
        sources(
            "jesus-tcp/src/**/*.py",
            "jesus-udp/src/**/*.py",
            "jesus-http/src/**/*.py",
            "jesus-zmq/src/**/*.py",
        ),
        ("jesus.runtime",),
    ),
    # Written as a third party would: nothing of another transport plugin.
    "the zmq plugin": (
        sources("jesus-zmq/src/**/*.py"),
        ("jesus_tcp", "jesus_udp", "jesus_http", "jesus.runtime"),
    ),
    "the transport toolkit": (list((CORE / "transport").glob("*.py")), ("jesus.runtime",)),
    "the sans-IO protocol": (
        list((CORE / "protocol").glob("*.py")),
        ("jesus.runtime", "jesus.transport", "anyio", "socket", "ssl"),
    ),
}


@pytest.mark.parametrize("layer", list(LAYERS))
def test_a_layer_never_imports_one_above_it(layer: str) -> None:
    files, forbidden = LAYERS[layer]
    assert files, f"no files found for {layer}"
    wrong = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in files
        for name in imported(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    }
    assert not wrong, sorted(wrong)
