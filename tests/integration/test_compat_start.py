"""Compatibility checked at start, and by `jesus check`."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import jesus

pytestmark = pytest.mark.anyio
V1 = {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
V2_BREAKS = {
    **V1,
    "properties": {"id": {"type": "integer"}, "email": {"type": "string"}},
    "required": ["id", "email"],
}
# Widening a field's type and no longer requiring it keeps old callers working. (Adding a typed
# field would not: an old caller's open object may already send that field with any value.)
V2_COMPATIBLE = {"type": "object", "properties": {"id": {"type": ["integer", "string"]}}}


def billing(request: Any, version: str) -> jesus.Service:
    svc = jesus.Service("billing", version=version)

    @svc.method(request=request, response={"type": "object"})
    async def charge(data: Any) -> Any:
        return {"ok": True}

    return svc


def orders(sends: Any) -> jesus.Service:
    svc = jesus.Service("orders")
    svc.use("billing.charge", request=sends, response={"type": "object"})

    @svc.method()
    async def place(data: Any) -> Any:
        return await svc.call("billing.charge", data)

    return svc


async def test_a_caller_refuses_to_start_against_a_provider_it_would_break(registry: str) -> None:
    async with jesus.serve(billing(V2_BREAKS, "2.0.0"), registry=registry):
        with pytest.raises(jesus.IncompatibleSchemas) as refused:
            async with jesus.serve(orders(V1), registry=registry):
                pass
        text = refused.value.report.text()
        assert "orders -> billing.charge" in text and "/email" in text
        assert "required by the reader, optional for the writer" in text
        async with jesus.serve(orders(V1), registry=registry, on_incompatible="warn"):
            pass  # warned, started


async def test_a_new_provider_version_is_checked_against_live_callers_and_versions(
    registry: str,
) -> None:
    async with (
        jesus.serve(billing(V1, "1.0.0"), registry=registry),
        jesus.serve(orders(V1), registry=registry),
    ):
        with pytest.raises(jesus.IncompatibleSchemas) as refused:
            async with jesus.serve(billing(V2_BREAKS, "2.0.0"), registry=registry):
                pass
        text = refused.value.report.text()
        assert "billing 1.0.0 -> 2.0.0 charge request (old callers)" in text
        assert "orders -> billing.charge (billing 2.0.0) request" in text
        async with jesus.serve(billing(V2_COMPATIBLE, "2.1.0"), registry=registry):
            pass  # a widened request keeps old callers working


async def test_event_schemas_are_checked(registry: str) -> None:
    listener = jesus.Service("audit")

    @listener.listener("user.*", schema={"type": "object", "required": ["id", "email"]})
    async def on_user(data: Any) -> None:
        pass

    emitter = jesus.Service("accounts")
    emitter.emitter("user.created", schema={"type": "object", "required": ["id"]})
    async with jesus.serve(listener, registry=registry):
        with pytest.raises(
            jesus.IncompatibleSchemas, match=r"event user\.created: accounts -> audit"
        ):
            async with jesus.serve(emitter, registry=registry):
                pass


def test_jesus_check_reports_and_gates(registry: str) -> None:
    import anyio

    env = {**os.environ, "JESUS_REGISTRY": registry}

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jesus", "check"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    async def scenario() -> tuple[
        subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]
    ]:
        async with (
            jesus.serve(billing(V1, "1.0.0"), registry=registry),
            jesus.serve(orders(V1), registry=registry),
        ):
            good = await anyio.to_thread.run_sync(check)
            async with jesus.serve(
                billing(V2_BREAKS, "2.0.0"), registry=registry, on_incompatible="warn"
            ):
                bad = await anyio.to_thread.run_sync(check)
        return good, bad

    good, bad = anyio.run(scenario)
    assert good.returncode == 0 and "compatible" in good.stdout, good.stdout + good.stderr
    assert bad.returncode == 1 and "INCOMPATIBLE" in bad.stdout and "/email" in bad.stdout
