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
