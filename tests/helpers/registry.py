"""The registry contract (jesus.testing.registry) with its waits for TTLs run once."""

from __future__ import annotations

from typing import Any

import pytest

from jesus.testing.registry import RegistryConformance


class TimedOnce(RegistryConformance):
    """The two tests that wait out TTLs on asyncio alone: what they check is the registry's
    own clock (memcached's expiry, a file's expires_at), reached from worker threads; every
    other test of the contract still runs those threads from each loop."""

    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_an_instance_that_stops_heartbeating_drops_out_within_its_ttl(
        self, backend: Any, anyio_backend: str
    ) -> None:
        await super().test_an_instance_that_stops_heartbeating_drops_out_within_its_ttl(backend)

    @pytest.mark.parametrize("anyio_backend", ["asyncio"])
    async def test_heartbeat_renews(self, backend: Any, anyio_backend: str) -> None:
        await super().test_heartbeat_renews(backend)
