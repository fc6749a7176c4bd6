"""`python -m tests.daemon.provider_process SOCKET`: a process that offers the test service
`pcalc` through the daemon, for tests that kill it."""

from __future__ import annotations

import sys

import anyio

from jesus_daemon import provide
from tests.daemon.test_providers import calc


async def main(socket: str) -> None:
    async with provide(calc([]), socket=socket):
        print("provided", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
