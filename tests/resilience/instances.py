"""Start instances of tests/resilience/instance.py from a test, and stop or kill them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]


class Instances:
    def __init__(self, backend: str, registry: str, state: Path) -> None:
        self.backend = backend
        self.registry = registry
        self.state = state
        self.processes: dict[str, subprocess.Popen[str]] = {}

    async def start(self, name: str, version: str = "1.0.0", behaviour: str = "ok") -> None:
        process = self._spawn(name, version, behaviour)
        assert process.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(process.stdout.readline)
        assert json.loads(line)["name"] == name, line

    async def start_all(self, *specs: dict[str, str]) -> None:
        """`start(**spec)` for each of `specs`, at once: each spends a while starting Python."""
        async with anyio.create_task_group() as tg:
            for spec in specs:
                tg.start_soon(partial(self.start, **spec))

    def _spawn(self, name: str, version: str, behaviour: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.resilience.instance",
                self.backend,
                self.registry,
                name,
                version,
                behaviour,
                str(self.state),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.processes[name] = process
        return process

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.kill()
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    def charges(self) -> list[str]:
        """Every charge that ran, on any instance."""
        ran: list[str] = []
        for path in self.state.glob("*.charges"):
            ran += path.read_text().split()
        return ran


@asynccontextmanager
async def instances(registry: str, state: Path) -> AsyncIterator[Instances]:
    backend = "trio" if _on_trio() else "asyncio"
    started = Instances(backend, registry, state)
    try:
        yield started
    finally:
        started.stop_all()


def _on_trio() -> bool:
    import sniffio

    return sniffio.current_async_library() == "trio"
