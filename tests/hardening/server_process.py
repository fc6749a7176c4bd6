"""A jesus server in a process of its own, for tests that measure its memory.

    python -m tests.hardening.server_process BACKEND REGISTRY_DIR CHANNEL [CHANNEL...]
        [--limits JSON]

serves the service `hard` on an embedded registry in REGISTRY_DIR, on 127.0.0.1 and free
ports, on the anyio BACKEND (`asyncio` or `trio`), with `jesus.Limits(**JSON)`. When it is
ready it prints one JSON line on stdout: `{"pid", "backend", "endpoints", "limits",
"ignored_limits"}`; it stops (gracefully) on SIGTERM or SIGINT. On SIGUSR1 it collects
garbage and hands the C allocator's free memory back to the system (`malloc_trim`), then
prints `{"trimmed": true}`: what the process still holds after that is held by live objects
(or pinned by them), not cached by the allocator.

The service, every method with schemas `True`:

- `echo(data)` returns `data`, and `slow_size(data)` sleeps SLOW_SECONDS then returns the size
  of `data` (so a large request is held in flight while its answer stays small); both are
  declared on the first CHANNEL and served only there (a call to them over another transport
  is still read and decoded, then refused WRONG_CHANNEL);
- `echo_<transport>` for each CHANNEL, declared on it: what a well-behaved `jesus.Client`
  calls to probe that transport (`hard.echo_tcp`, `hard.echo_udp`, `hard.echo_http`).

`ServerProcess` starts one from a test and stops it. With JESUS_HARDENING_SERVER_PYTHONPATH
set, that path is put first on the server's PYTHONPATH, so the same attacks can be run against
another checkout of the library (for instance one from before a fix, to see a test fail).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import jesus

SERVICE = "hard"
SLOW_SECONDS = 2.0
ROOT = Path(__file__).resolve().parents[2]


def build_service(channels: list[str]) -> jesus.Service:
    svc = jesus.Service(SERVICE, channel=channels[0])

    @svc.method(request=True, response=True)
    async def echo(data: Any) -> Any:
        return data

    @svc.method(request=True, response=True)
    async def slow_size(data: Any) -> Any:
        await anyio.sleep(SLOW_SECONDS)
        return len(data) if isinstance(data, bytes | str | list | dict) else None

    for channel in channels:
        transport = channel.split("+", 1)[0]

        async def echo_on(data: Any) -> Any:
            return data

        echo_on.__name__ = f"echo_{transport}"
        svc.method(name=f"echo_{transport}", channel=channel, request=True, response=True)(echo_on)
    return svc


def make_limits(given: dict[str, Any]) -> tuple[jesus.Limits, list[str]]:
    """`jesus.Limits(**given)`; names this version of the library does not know are left out
    (and listed), so the same test runs against older checkouts."""
    known = {f.name for f in dataclasses.fields(jesus.Limits)}
    ignored = sorted(set(given) - known)
    if ignored:
        print(f"server_process: limits unknown to this library: {ignored}", file=sys.stderr)
    return jesus.Limits(**{k: v for k, v in given.items() if k in known}), ignored


async def main(args: argparse.Namespace) -> None:
    limits, ignored = make_limits(json.loads(args.limits))
    svc = build_service(args.channels)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with jesus.serve(
            svc, registry=f"embedded://{args.registry}", limits=limits, drain_timeout=2
        ) as node:
            line = {
                "pid": os.getpid(),
                "backend": args.backend,
                "endpoints": node.endpoints,
                "limits": dataclasses.asdict(limits),
                "ignored_limits": ignored,
            }
            print(json.dumps(line), flush=True)
            async for _ in signals:
                break


def trim(signum: int = 0, frame: Any = None) -> None:
    """SIGUSR1: give back what the allocator keeps, so RSS shows what live objects hold."""
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc; elsewhere there is nothing to call
    except (OSError, AttributeError):
        pass
    print(json.dumps({"trimmed": True}), flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.hardening.server_process")
    parser.add_argument("backend", choices=["asyncio", "trio"])
    parser.add_argument("registry", help="directory of the embedded registry")
    parser.add_argument("channels", nargs="+", help="e.g. tcp+msgpack+zstd udp+msgpack+zstd")
    parser.add_argument("--limits", default="{}", help="jesus.Limits keyword arguments, JSON")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- the test's side


class ServerProcess:
    """`with ServerProcess(backend, channels, limits, registry_dir) as server:` runs the server
    above; `server.pid`, `server.endpoints`, `server.registry` (a registry URL). The process
    is stopped (SIGTERM, then SIGKILL) when the block exits, whatever happened."""

    def __init__(
        self,
        backend: str,
        channels: list[str],
        limits: dict[str, Any],
        registry_dir: Path,
        ready_timeout: float = 20.0,
    ) -> None:
        self.backend = backend
        self.channels = channels
        self.limits = limits
        self.registry_dir = registry_dir
        self.registry = f"embedded://{registry_dir}"
        self.ready_timeout = ready_timeout
        self.stderr_path = registry_dir.parent / f"server-{backend}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._stdout = b""

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def endpoints(self) -> dict[str, str]:
        return dict(self.info["endpoints"])

    def address(self, scheme: str) -> tuple[str, int]:
        host, port = self.endpoints[scheme].split("://", 1)[1].rsplit(":", 1)
        return host, int(port)

    def stderr_tail(self, size: int = 4000) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ)
        paths = [str(ROOT)]
        if other := os.environ.get("JESUS_HARDENING_SERVER_PYTHONPATH"):
            paths.insert(0, other)
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        cmd = [
            sys.executable,
            "-m",
            "tests.hardening.server_process",
            self.backend,
            str(self.registry_dir),
            *self.channels,
            "--limits",
            json.dumps(self.limits),
        ]
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr
            )
        try:
            self.info = json.loads(self._line(self.ready_timeout, "ready"))
        except BaseException:
            self.__exit__()
            raise
        return self

    def trim(self, timeout: float = 10.0) -> None:
        """Have the server give its allocator's free memory back (see the module's doc)."""
        os.kill(self.pid, signal.SIGUSR1)
        assert json.loads(self._line(timeout, "trimmed")) == {"trimmed": True}

    def _line(self, timeout: float, what: str) -> bytes:
        """The next line the server prints."""
        assert self.proc is not None and self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            while b"\n" not in self._stdout:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise RuntimeError(
                        f"server not {what} after {timeout} s:\n{self.stderr_tail()}"
                    )
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise RuntimeError(
                        f"server exited ({self.proc.wait()}) before it was {what}:\n"
                        f"{self.stderr_tail()}"
                    )
                self._stdout += chunk
        line, self._stdout = self._stdout.split(b"\n", 1)
        return line

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    arguments = parse_args()
    signal.signal(signal.SIGUSR1, trim)
    anyio.run(main, arguments, backend=arguments.backend)
