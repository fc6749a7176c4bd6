"""jesus_zmq is written as a third party would write it: from jesus's public modules only
(no name with a leading underscore, nothing of another transport plugin)."""

from __future__ import annotations

import ast
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[2] / "packages" / "jesus-zmq" / "src" / "jesus_zmq"


def test_jesus_zmq_imports_nothing_private() -> None:
    files = sorted(SOURCES.glob("*.py"))
    assert files
    wrong = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jesus"):
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("jesus")]
            else:
                continue
            for name in names:
                if name.startswith(("jesus_tcp", "jesus_udp", "jesus_http")) or any(
                    part.startswith("_") and part != "__future__" for part in name.split(".")
                ):
                    wrong.append(f"{path.name}: {name}")
    assert not wrong, wrong
