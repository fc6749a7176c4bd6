"""The plugin's entry point (`jesus` group, name `otel`): registers `TELEMETRY`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jesus
from jesus_otel.telemetry import Telemetry

# The instance every Client and served node of this process runs (its `use()` points it at
# other providers than the global ones).
TELEMETRY = Telemetry()


@jesus.hookimpl
def jesus_register_middleware(register: Callable[[Any], None]) -> None:
    register(TELEMETRY)
