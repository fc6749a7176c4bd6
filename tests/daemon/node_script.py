"""Node.js scripts (tests/daemon/node/) run as processes of their own, given the daemon's
socket; each reports what it saw on stdout, one JSON object a line."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

SCRIPTS = Path(__file__).parent / "node"
CLIENT = Path(__file__).parents[2] / "clients" / "node"
MIN_NODE = 18
TIMEOUT = 10.0


@cache
def node_binary() -> str:
    """The `node` to run; the test fails, saying what to install, when there is none."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            f"these tests need Node.js {MIN_NODE} or later on PATH: bash scripts/system-deps "
            "installs it (apt-get install nodejs)",
            pytrace=False,
        )
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    if major < MIN_NODE:
        pytest.fail(f"{node} is Node.js {version.stdout.strip()}: {MIN_NODE} or later is needed")
    return node


class NodeScript:
    def __init__(self, process: Process, log: Path) -> None:
        assert process.stdout is not None
        self.process = process
        self.log = log
        self._lines = BufferedByteReceiveStream(process.stdout)

    def _stderr(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    async def next(self) -> Any:
        """The next object the script reported."""
        try:
            with anyio.fail_after(TIMEOUT):
                line = await self._lines.receive_until(b"\n", 1 << 24)
        except TimeoutError:
            raise AssertionError(
                f"the node script said nothing; stderr:\n{self._stderr()}"
            ) from None
        except (anyio.IncompleteRead, anyio.EndOfStream):
            raise AssertionError(f"the node script ended; stderr:\n{self._stderr()}") from None
        return json.loads(line)

    async def until(self, key: str) -> Any:
        """The next report that has `key`, skipping others."""
        while True:
            report = await self.next()
            if key in report:
                return report

    async def rest(self) -> list[Any]:
        """Every report until the script ends, which it must do by itself and cleanly."""
        reports = []
        with anyio.fail_after(TIMEOUT):
            while True:
                try:
                    line = await self._lines.receive_until(b"\n", 1 << 24)
                except (anyio.IncompleteRead, anyio.EndOfStream):
                    break
                reports.append(json.loads(line))
        assert await self.exit_code() == 0, self._stderr()
        return reports

    async def exit_code(self) -> int:
        with anyio.fail_after(TIMEOUT):
            return await self.process.wait()

    def terminate(self) -> None:
        self.process.terminate()


@asynccontextmanager
async def node_script(name: str, *args: str, log_dir: Path) -> AsyncIterator[NodeScript]:
    """`tests/daemon/node/NAME.mjs ARGS...` running until the block ends."""
    log = log_dir / f"{name}.stderr"
    with log.open("wb") as stderr:
        process = await anyio.open_process(
            [node_binary(), str(SCRIPTS / f"{name}.mjs"), *args],
            stdin=subprocess.DEVNULL,
            stderr=stderr,
        )
    async with process:
        try:
            yield NodeScript(process, log)
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
