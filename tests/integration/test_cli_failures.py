"""Every `jesus` failure is one `jesus: …` line, the traceback only under -v; -v tells what a
call or an emit did. The real command, in its own process, on real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from jesus.cli.failures import UsageError, meaningful
from jesus.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
JESUS = [sys.executable, "-m", "jesus"]

SERVICES = {
    "stream_on_udp": (
        "svc = jesus.Service('pings', channel='udp')\n"
        "@svc.method(mode='stream')\n"
        "async def ticks(data):\n"
        "    yield 1\n"
    ),
    "mistyped_codec": (
        "svc = jesus.Service('typo', channel='tcp+jsno')\n"
        "@svc.method()\n"
        "async def ping(data):\n"
        "    return 'pong'\n"
    ),
    "over_udp": (
        "svc = jesus.Service('pinger', channel='udp')\n"
        "@svc.method(mode='noResponse')\n"
        "async def ping(data): ...\n"
    ),
    "over_tcp": (
        "svc = jesus.Service('pinger', channel='tcp')\n"
        "@svc.method()\n"
        "async def ping(data):\n"
        "    return 'pong'\n"
    ),
    "users_v1": (
        "svc = jesus.Service('users', version='1.0.0', channel='tcp')\n"
        "@svc.method(request={'type': 'object', 'properties': {'id': {'type': 'integer'}}})\n"
        "async def get(data):\n"
        "    return data\n"
    ),
    "users_v2": (  # old callers send an integer id, or none: both now refused
        "svc = jesus.Service('users', version='2.0.0', channel='tcp')\n"
        "@svc.method(request={'type': 'object', 'properties': {'id': {'type': 'string'}},\n"
        "                     'required': ['id']})\n"
        "async def get(data):\n"
        "    return data\n"
    ),
    "audit": (
        "svc = jesus.Service('audit', channel='tcp')\n"
        "@svc.listener('user.*', schema={'type': 'object', 'required': ['id']})\n"
        "async def on_user(data): ...\n"
    ),
    "broken_import": "raise RuntimeError('the module fails as it loads')\n",
}


@pytest.fixture
def place(tmp_path: Path, registry: str) -> Path:
    for name, body in SERVICES.items():
        (tmp_path / f"{name}.py").write_text("import jesus\n" + body)
    return tmp_path


def env_for(registry: str, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry, **extra}


def run(
    place: Path, registry: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*JESUS, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=place,
        env=env or env_for(registry),
    )


def at_once(
    *runs: Callable[[], subprocess.CompletedProcess[str]],
) -> list[subprocess.CompletedProcess[str]]:
    """Each of `runs`, all at the same time: they do not depend on one another, and each
    spends most of its time starting Python."""
    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda one: one(), runs))


def one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The failure's stderr: a single `jesus: …` line holding each of `expected`."""
    assert result.returncode != 0, result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jesus: "), result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


@contextmanager
def serving(place: Path, registry: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    with serving_all(place, registry, args) as (proc,):
        yield proc


@contextmanager
def serving_all(
    place: Path, registry: str, *commands: tuple[str, ...]
) -> Iterator[list[subprocess.Popen[str]]]:
    """`jesus serve` with each of `commands`, all started at once."""
    procs = [
        subprocess.Popen(
            [*JESUS, "serve", *args],
            cwd=place,
            env=env_for(registry),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("serving"), line + (proc.stderr.read() if proc.stderr else "")
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serve_refusals_are_one_line(place: Path, registry: str, backend: str) -> None:
    b = ["--backend", backend]
    only_tcp = env_for(registry, JESUS_LOAD_PLUGINS="tcp")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        stream_on_udp, mistyped, over_udp, in_use = at_once(
            lambda: run(place, registry, *b, "serve", "stream_on_udp:svc"),
            lambda: run(place, registry, *b, "serve", "mistyped_codec:svc"),
            lambda: run(place, registry, *b, "serve", "over_udp:svc", env=only_tcp),
            lambda: run(place, registry, *b, "serve", "over_tcp:svc", "--bind", f"tcp={address}"),
        )
    one_line(
        stream_on_udp,
        "pings.ticks is declared 'stream' over udp+msgpack+none, which udp cannot carry",
        "channels that can: ",
    )
    one_line(mistyped, "no codec named 'jsno' is installed (have: ")
    one_line(over_udp, "no transport named 'udp' is installed", 'pip install "jesus-core[udp]"')
    one_line(in_use, f"tcp cannot listen on {address}: Address already in use")


def test_a_compatibility_refusal_names_the_fields_and_the_options_decide(
    place: Path, registry: str
) -> None:
    with serving(place, registry, "users_v1:svc"):
        refused, forward = at_once(  # both refused, against users 1.0.0 alone
            lambda: run(place, registry, "serve", "users_v2:svc"),
            lambda: run(place, registry, "serve", "users_v2:svc", "--compatibility", "forward"),
        )
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        first, *report = refused.stderr.splitlines()
        assert first == "jesus: incompatible with running services:"
        assert any("users 1.0.0 -> 2.0.0 get request" in line and "/id" in line for line in report)
        assert forward.stderr.startswith("jesus: incompatible with running services:")
        with serving(place, registry, "users_v2:svc", "--on-incompatible", "warn") as warned:
            pass
        assert "starting despite incompatibilities" in (
            warned.stderr.read() if warned.stderr else ""
        )
        with serving(place, registry, "users_v2:svc", "--compatibility", "none") as unchecked:
            pass
        assert "incompatib" not in (unchecked.stderr.read() if unchecked.stderr else "")


def test_targets_and_options_that_cannot_run(place: Path, registry: str) -> None:
    missing, nothing, no_attr, no_scheme, broken, no_ca, not_json = at_once(
        lambda: run(place, registry, "serve", "no_such_module:svc"),
        lambda: run(place, registry, "serve", "over_tcp:nothing"),
        lambda: run(place, registry, "serve", "over_tcp"),
        lambda: run(place, registry, "serve", "over_tcp:svc", "--bind", "tcp"),
        lambda: run(place, registry, "serve", "broken_import:svc"),
        lambda: run(place, registry, "serve", "over_tcp:svc", "--ca", "nowhere.pem"),
        lambda: run(place, registry, "call", "calc.add", "{nope"),
    )
    assert missing.returncode == 2
    one_line(missing, "no module named 'no_such_module'")
    assert nothing.returncode == 2
    one_line(no_attr, "must be MODULE:ATTR")
    one_line(no_scheme, "SCHEME=ADDRESS")
    one_line(broken, "importing broken_import failed: RuntimeError: the module fails as it loads")
    one_line(no_ca, "nowhere.pem")
    one_line(not_json, "DATA is not JSON")


def test_verbose_shows_the_traceback_then_the_line(place: Path, registry: str) -> None:
    result = run(place, registry, "-v", "serve", "mistyped_codec:svc")
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert result.stderr.splitlines()[-1].startswith("jesus: no codec named 'jsno'")


def test_an_unknown_plugin_name_is_warned_about(place: Path, registry: str) -> None:
    env = env_for(registry, JESUS_LOAD_PLUGINS="tcp,tpc")
    result, quiet = at_once(
        lambda: run(place, registry, "plugins", env=env),
        lambda: run(place, registry, "plugins", env=env_for(registry, JESUS_LOAD_PLUGINS="tcp")),
    )
    assert result.returncode == 0
    assert "JESUS_LOAD_PLUGINS names 'tpc', which no installed plugin is" in result.stderr
    assert "installed: " in result.stderr and "tcp" in result.stdout
    assert "JESUS_LOAD_PLUGINS" not in quiet.stderr


def test_emit_fails_when_nothing_was_delivered(place: Path, registry: str) -> None:
    unheard, unacked = at_once(
        lambda: run(place, registry, "emit", "user.created", "{}"),
        lambda: run(place, registry, "emit", "user.created", "{}", "--ack"),
    )
    one_line(unheard, "no live service listens")
    one_line(unacked, "no live service")
    with serving(place, registry, "audit:svc"):
        refused, delivered = at_once(
            lambda: run(place, registry, "emit", "user.created", '{"name": "x"}'),
            lambda: run(place, registry, "emit", "user.created", '{"id": 1}'),
        )
        assert refused.returncode == 1
        assert "jesus: event 'user.created' not delivered to 1 group(s): audit" in refused.stderr
        assert '"id" is a required property' in refused.stderr
        assert delivered.returncode == 0, delivered.stderr


def test_verbose_tells_what_call_and_emit_did(place: Path, registry: str) -> None:
    with serving_all(place, registry, ("over_tcp:svc",), ("audit:svc",)):
        called, emitted, quiet = at_once(
            lambda: run(place, registry, "-v", "call", "pinger.ping"),
            lambda: run(place, registry, "-v", "emit", "user.created", '{"id": 1}', "--ack"),
            lambda: run(place, registry, "call", "pinger.ping"),
        )
        assert called.returncode == 0 and called.stdout.strip() == '"pong"'
        assert "pinger.ping: 1 instance(s) can take it; first pinger 0.1.0" in called.stderr
        assert "calling pinger.ping as response over tcp+msgpack+none [corrid=" in called.stderr
        assert "pinger.ping answered in " in called.stderr
        assert emitted.returncode == 0, emitted.stderr
        assert "delivering user.created to group audit: audit [" in emitted.stderr
        assert "over tcp+msgpack+none as ack [corrid=" in emitted.stderr
        assert "group audit: acknowledged in " in emitted.stderr
        assert quiet.stderr == ""


def test_the_meaningful_error_of_an_exception_group() -> None:
    import asyncio

    wanted = ConfigurationError("the one that says why")
    nested = BaseExceptionGroup(
        "outer",
        [
            BaseExceptionGroup("cancelled", [asyncio.CancelledError()]),
            ExceptionGroup("inner", [RuntimeError("noise"), wanted]),
        ],
    )
    assert meaningful(nested) is wanted
    assert isinstance(meaningful(ExceptionGroup("g", [KeyError("k")])), KeyError)
    plain = UsageError("plain")
    assert meaningful(plain) is plain
