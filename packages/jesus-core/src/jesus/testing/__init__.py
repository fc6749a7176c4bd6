"""Shared test suites for plugin authors (needs pytest and anyio's pytest plugin)."""
