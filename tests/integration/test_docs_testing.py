"""docs/testing.md's example test runs as written, with the README's calc.py, under pytest."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_the_documented_test_passes(tmp_path: Path) -> None:
    (calc,) = [b for b in python_blocks(ROOT / "README.md") if b.startswith("# calc.py")]
    (example,) = [b for b in python_blocks(ROOT / "docs/testing.md") if "# test_calc.py" in b]
    (tmp_path / "calc.py").write_text(calc)
    (tmp_path / "test_calc.py").write_text(example)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_calc.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "12 passed" in result.stdout, result.stdout
    assert "warning" not in result.stdout.lower(), result.stdout  # e.g. TestClient collected
