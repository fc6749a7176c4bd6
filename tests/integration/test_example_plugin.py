"""The example plugin in examples/jesus-timing, installed as a user would (bootstrap installs
it), loads through its entry point and its middleware and codec work on real calls."""

from __future__ import annotations

from typing import Any

import jesus_timing
import pytest

from jesus.plugins import default_catalog
from tests.helpers.services import calculator

pytestmark = pytest.mark.anyio


def test_example_plugin_loads_from_its_entry_point() -> None:
    assert default_catalog().contributions["timing"] == ["codec:ascii85", "middleware:timing"]


async def test_example_middleware_and_codec_on_real_calls(running: Any) -> None:
    svc, _ = calculator("tcp+ascii85")
    async with running(svc) as (_, client):
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3
    durations = jesus_timing.TIMING.durations
    assert durations[("client", "calc.add")] and durations[("server", "calc.add")]
