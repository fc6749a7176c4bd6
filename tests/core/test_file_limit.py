"""serve() makes room for max_connections among the process's open files."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SERVE = textwrap.dedent(
    """
    import logging, resource, sys, anyio
    sys.path.insert(0, {root!r})
    import jesus
    from tests.helpers.services import calculator

    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(message)s")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, ({soft}, {hard}))

    async def main():
        async with jesus.serve(calculator()[0], registry={registry!r},
                               limits=jesus.Limits(max_connections={connections})):
            print("soft", resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    anyio.run(main)
    """
)


def run(tmp_path: Path, soft: int, hard: int, connections: int) -> str:
    script = SERVE.format(
        root=str(ROOT),
        soft=soft,
        hard=hard,
        connections=connections,
        registry=f"embedded://{tmp_path}",
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_the_soft_limit_is_raised_to_hold_the_connections(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 1256:
        pytest.fail(f"this machine's hard limit on open files ({hard}) is below the test's need")
    out = run(tmp_path, soft=512, hard=hard, connections=1000)
    assert "soft 1256" in out, out  # 1000 connections on the one tcp server, and headroom
    assert "raise the limit" not in out


def test_a_hard_limit_too_low_is_named(tmp_path: Path) -> None:
    out = run(tmp_path, soft=300, hard=400, connections=2000)
    assert "soft 400" in out, out
    assert "accept up to 2000 connections: raise the limit" in out, out
