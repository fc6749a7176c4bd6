"""The `jesus` command as a user runs it: separate processes, real sockets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JESUS = [sys.executable, "-m", "jesus"]


def run(
    *args: str, registry: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if registry:
        env["JESUS_REGISTRY"] = registry
    return subprocess.run(
        [*JESUS, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def run_all(
    *commands: tuple[str, ...], registry: str | None = None
) -> list[subprocess.CompletedProcess[str]]:
    """`run` each of `commands`, all at once: they do not depend on one another, and each
    spends most of its time starting Python."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run(*args, registry=registry), commands))


@pytest.fixture
def served(registry: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry}
    proc = subprocess.Popen(
        [*JESUS, "serve", "tests.helpers.served:calc"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("serving calc"), line + (proc.stderr.read() if proc.stderr else "")
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_plugins_lists_what_each_plugin_contributes() -> None:
    result, listed = run_all(("plugins", "--json"), ("plugins",))
    assert result.returncode == 0, result.stderr
    plugins = json.loads(result.stdout)["plugins"]
    assert "transport:tcp" in plugins["tcp"] and "transport:unix" in plugins["tcp"]
    assert "codec:msgpack" in plugins["jesus.builtins"]
    text = listed.stdout
    assert "transport    tcp" in text and "messages are checked with" in text


def test_serve_call_services_and_graceful_stop(
    served: subprocess.Popen[str], registry: str
) -> None:
    result, streamed, invalid, pinned, unmatched, unknown, bad_json, listing, as_json = run_all(
        ("call", "calc.add", '{"a": 2, "b": 40}'),
        ("call", "calc.count", '{"n": 3}'),
        ("call", "calc.add", '{"a": "x"}'),
        ("call", "calc@^0.1.add", '{"a": 1, "b": 1}', "--strategy", "latency"),
        ("call", "calc@^9.add", '{"a": 1, "b": 1}'),
        ("call", "calc.add", "{}", "--strategy", "nope"),
        ("call", "calc.add", "{nope"),
        ("services",),
        ("services", "--json"),
        registry=registry,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 42

    assert streamed.stdout.splitlines() == ["0", "1", "2"]

    assert invalid.returncode == 1
    assert "INVALID_REQUEST" in invalid.stderr and "/a" in invalid.stderr

    assert pinned.returncode == 0 and json.loads(pinned.stdout) == 2, pinned.stderr
    assert unmatched.returncode == 1
    assert "in version range ^9 (running: 0.1.0)" in unmatched.stderr, unmatched.stderr
    assert unknown.returncode == 1 and "unknown load-balancing strategy 'nope'" in unknown.stderr

    assert bad_json.returncode == 2 and "not JSON" in bad_json.stderr

    assert "calc.add  [response] over tcp+msgpack+none" in listing.stdout
    assert '"required": ["a", "b"]' in listing.stdout
    records = json.loads(as_json.stdout)
    assert records[0]["methods"]["count"]["mode"] == "stream"

    # SIGTERM while a call is in flight: the call still completes, then the process exits 0.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry}
    slow = subprocess.Popen(
        [*JESUS, "-v", "call", "calc.sleep", "2.0"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Once -v tells the call goes out (however long the process took to start), time for it
    # to arrive; the call then sleeps 1.5 s more, past the SIGTERM.
    assert slow.stderr is not None
    told = ""
    while "calling calc.sleep" not in told and (line := slow.stderr.readline()):
        told += line
    assert "calling calc.sleep" in told, told
    time.sleep(0.5)
    served.send_signal(signal.SIGTERM)
    out, err = slow.communicate(timeout=30)
    assert slow.returncode == 0, err
    assert json.loads(out) == "slept"
    assert served.wait(timeout=30) == 0
    assert "draining" in (served.stderr.read() if served.stderr else "")
    assert "no live services" in run("services", registry=registry).stdout


def test_call_to_an_unknown_service_fails_clearly(registry: str) -> None:
    result = run("call", "ghost.method", "{}", registry=registry)
    assert result.returncode == 1
    assert "no live instance of service 'ghost'" in result.stderr


def test_serve_with_a_bad_target_fails_clearly() -> None:
    result = run("serve", "no_such_module:svc")
    assert result.returncode == 2 and "no_such_module" in result.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_succeeds(backend: str) -> None:
    result = run("--backend", backend, "demo", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demo succeeded" in result.stdout
    for mode in ("response", "stream", "ack", "noResponse"):
        assert f"ok    {mode}" in result.stdout
    assert "FAIL" not in result.stdout
