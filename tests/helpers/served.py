"""Services for tests that run them in another process with `jesus serve`."""

from __future__ import annotations

from tests.helpers.services import calculator

calc = calculator()[0]
