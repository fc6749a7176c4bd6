"""Testing with jesus: `TestClient`, a user's services called in memory (no sockets), and
the conformance suites for plugin authors (`jesus.testing.transport`,
`jesus.testing.registry`, which need pytest and anyio's pytest plugin)."""

from jesus.testing.client import TestClient

__all__ = ["TestClient"]
