"""Shared fixtures: every async test runs on asyncio, asyncio with uvloop, and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import jesus


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
def registry(tmp_path: Path) -> str:
    """A private embedded registry, so tests never see each other's services."""
    return f"embedded://{tmp_path / 'registry'}"


@pytest.fixture
def running(registry: str) -> Callable[..., Any]:
    """`async with running(service, ...) as (node, client):` serves and connects."""

    @asynccontextmanager
    async def run(
        *services: jesus.Service, **kwargs: Any
    ) -> AsyncIterator[tuple[jesus.Node, jesus.Client]]:
        client_kwargs = kwargs.pop("client", {})
        async with (
            jesus.serve(*services, registry=registry, **kwargs) as node,
            jesus.Client(registry, **client_kwargs) as client,
        ):
            yield node, client

    return run
