"""Services for tests that run them in another process with `jesus serve`."""

from __future__ import annotations

from tests.helpers.services import calculator

calc = calculator()[0]


def _udp_only() -> object:
    import jesus

    svc = jesus.Service("pinger", channel="udp")

    @svc.method()
    async def ping(data: object) -> str:
        return "pong"

    return svc


pinger = _udp_only()


def _sealed() -> object:
    import jesus

    svc = jesus.Service("ledger", channel="udp")

    @svc.method(seal="encrypt", allow=["billing"])
    async def record(data: object) -> dict[str, object]:
        caller = jesus.current_caller()
        return {"by": caller.name if caller else None, "entry": data}

    return svc


ledger = _sealed()
