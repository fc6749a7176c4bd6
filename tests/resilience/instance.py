"""One instance of the service `pricing`, in a process of its own, for the resilience tests.

    python -m tests.resilience.instance BACKEND REGISTRY NAME VERSION BEHAVIOUR [STATE_DIR]

serves `pricing` (version VERSION; "2.x" versions require a `currency` in every quote) on
tcp, on the embedded REGISTRY, on the anyio BACKEND, and prints `{"pid", "name"}` once
registered. BEHAVIOUR is what `quote` does:

- `ok`: answers at once;
- `flaky`: fails every other call (REMOTE_FAILURE) while STATE_DIR/flaky exists;
- `slow`: answers after 50 ms;
- `down`: refuses every call, UNAVAILABLE (its handler does nothing first).

`charge` (not idempotent) appends the request's `id` to STATE_DIR/NAME.charges before it
answers (after 100 ms): what ran, for a test that kills instances under load. `stats` tells
how many calls of each method arrived.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

import jesus

V1_QUOTE = {
    "type": "object",
    "properties": {"item": {"type": "string"}},
    "required": ["item"],
}
V2_QUOTE = {
    "type": "object",
    "properties": {"item": {"type": "string"}, "currency": {"type": "string"}},
    "required": ["item", "currency"],
}
ANSWER = {
    "type": "object",
    "properties": {"price": {"type": "number"}, "by": {"type": "string"}},
    "required": ["price", "by"],
}


def build(name: str, version: str, behaviour: str, state: Path) -> jesus.Service:
    svc = jesus.Service("pricing", version=version)
    arrived: Counter[str] = Counter()

    @svc.method(
        request=V2_QUOTE if version.startswith("2") else V1_QUOTE,
        response=ANSWER,
        idempotent=True,
        retry=3,
    )
    async def quote(data: Any) -> Any:
        arrived["quote"] += 1
        if behaviour == "down":
            raise jesus.Unavailable(f"{name} is down")
        if behaviour == "flaky" and (state / "flaky").exists() and arrived["quote"] % 2:
            raise RuntimeError(f"{name} failed")
        if behaviour == "slow":
            await anyio.sleep(0.05)
        return {"price": 1.0, "by": name}

    @svc.method(request={"type": "object", "required": ["id"]}, response=True)
    async def charge(data: Any) -> Any:
        arrived["charge"] += 1
        await anyio.sleep(0.1)
        _ran(state / f"{name}.charges", data["id"])
        return name

    @svc.method()
    async def stats(data: Any) -> Any:
        return dict(arrived)

    return svc


def _ran(path: Path, key: str) -> None:
    with open(path, "a") as ran:  # a line is written whole before the answer leaves
        ran.write(f"{key}\n")


async def main(registry: str, name: str, version: str, behaviour: str, state: Path) -> None:
    svc = build(name, version, behaviour, state)
    async with jesus.serve(
        svc, registry=registry, compatibility="backward", on_incompatible="warn", ttl=5.0
    ):
        print(json.dumps({"pid": os.getpid(), "name": name}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    backend, registry, name, version, behaviour = sys.argv[1:6]
    state = Path(sys.argv[6]) if len(sys.argv) > 6 else Path(".")
    anyio.run(main, registry, name, version, behaviour, state, backend=backend)
