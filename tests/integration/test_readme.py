"""The README's example runs as written, on both backends, and its CLI lines work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)[0]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_example_runs(tmp_path: Path, backend: str) -> None:
    code = readme_example().replace("anyio.run(main)", f"anyio.run(main, backend={backend!r})")
    (tmp_path / "calc.py").write_text(code)
    env = {**os.environ, "JESUS_REGISTRY": f"embedded://{tmp_path / 'reg'}"}
    result = subprocess.run(
        [sys.executable, "calc.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["3", "0", "1", "2"]
    assert "'b' is a required property" in lines[4] or '"b" is a required property' in lines[4]


def test_readme_cli_lines(tmp_path: Path) -> None:
    """calc.py exactly as the README has it serves cleanly: its client code does not run."""
    (tmp_path / "calc.py").write_text(readme_example())
    env = {**os.environ, "JESUS_REGISTRY": f"embedded://{tmp_path / 'reg'}"}
    jesus = [sys.executable, "-m", "jesus"]
    server = subprocess.Popen(
        [*jesus, "serve", "calc:calc"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert first.startswith("serving calc 1.0.0 on "), first

        def cli(*args: str) -> str:
            out = subprocess.run(
                [*jesus, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
            )
            assert out.returncode == 0, out.stderr
            return out.stdout

        with ThreadPoolExecutor(4) as pool:  # independent, each mostly Python starting
            added, counted, services, plugins = pool.map(
                lambda args: cli(*args),
                [
                    ("call", "calc.add", '{"a": 1, "b": 2}'),
                    ("call", "calc.count", '{"n": 3}'),
                    ("services",),
                    ("plugins",),
                ],
            )
        assert json.loads(added) == 3
        assert counted.split() == ["0", "1", "2"]
        assert "calc.audit  [ack] over tcp+json+gzip" in services
        assert "transport    unix" in plugins
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert out == ""  # nothing but the serving line: no client output from the import
    assert err.splitlines() == ["received SIGTERM: draining", "stopped"]


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    (block,) = (b for b in re.findall(r"```python\n(.*?)```", text, re.S) if f"# {name}" in b)
    return block


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_readme_security_examples_run(tmp_path: Path, backend: str) -> None:
    """vault.py and ledger.py as written, with certificates made as the README makes them."""
    from jesus.security import devca

    devca.create_ca(tmp_path / "certs")
    for name in ("calc", "billing", "vault", "ledger"):
        devca.issue(tmp_path / "certs", name)
    outputs = {}
    for name in ("vault.py", "ledger.py"):
        code = readme_block(name).replace(
            "anyio.run(main)", f"anyio.run(main, backend={backend!r})"
        )
        (tmp_path / name).write_text(code)
        env = {**os.environ, "JESUS_REGISTRY": f"embedded://{tmp_path / name}-reg"}
        result = subprocess.run(
            [sys.executable, name],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        outputs[name] = result.stdout.splitlines()
    assert outputs["vault.py"] == ["billing (tls): 42", "open", "'calc' may not call vault.balance"]
    assert outputs["ledger.py"] == [
        "{'by': 'billing', 'amount': 5}",
        "payment of 5",
        "['ledger']",
    ]
