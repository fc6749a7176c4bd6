"""The documentation site builds with no warning, and its runnable examples run as written.

A ```python example whose first line is `# run` is complete: it is run as a script, in a fresh
directory with an embedded registry of its own and certificates made by the development CA
(certs/ca.pem, certs/NAME.pem and .key for each of CERT_NAMES), once per anyio backend. It
asserts what it shows, so an example that stops saying the truth fails here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MARK = "# run\n"
CERT_NAMES = ("calc", "billing", "vault", "ledger")

sys.path.insert(0, str(ROOT / "scripts"))
from docs_hooks import REPO_PAGES  # noqa: E402


def site_pages() -> list[Path]:
    return sorted((ROOT / "docs").rglob("*.md")) + [ROOT / p for p in REPO_PAGES]


def runnable_examples() -> list[tuple[str, str]]:
    found = []
    for page in site_pages():
        blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M)
        runnable = [b for b in blocks if b.startswith(MARK)]
        for i, block in enumerate(runnable, 1):
            found.append((f"{page.relative_to(ROOT)}#{i}", block))
    return found


EXAMPLES = runnable_examples()


def test_the_site_builds_strict_without_warnings(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    built = tmp_path / "site"
    for page in ("guide", "protocol", "node-client", "concepts", "seed-names", "security"):
        assert (built / page / "index.html").is_file(), page
    # README's links to docs/ were turned into the site's pages.
    assert 'href="../compatibility/"' in (built / "guide" / "index.html").read_text()


def test_the_site_has_runnable_examples() -> None:
    pages = {name.partition("#")[0] for name, _ in EXAMPLES}
    expected = {
        "concepts",
        "channels",
        "modes",
        "registry",
        "security",
        "seed-names",
        "compatibility",
        "resilience",
    }
    assert {f"docs/{name}.md" for name in expected} <= pages, pages
    for name, code in EXAMPLES:
        assert code.count("anyio.run(main)") == 1, (
            f"{name}: a runnable example ends in anyio.run(main)"
        )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from jesus.security import devca

    where = tmp_path_factory.mktemp("certs")
    devca.create_ca(where)
    for name in CERT_NAMES:
        devca.issue(where, name)
    return where


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_runs(tmp_path: Path, certs: Path, name: str, code: str, backend: str) -> None:
    script = code.replace("anyio.run(main)", f"anyio.run(main, backend={backend!r})")
    (tmp_path / "example.py").write_text(script)
    (tmp_path / "certs").symlink_to(certs)
    env = {**os.environ, "JESUS_REGISTRY": f"embedded://{tmp_path / 'registry'}"}
    result = subprocess.run(
        [sys.executable, "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{name} on {backend}:\n{result.stdout}{result.stderr}"
