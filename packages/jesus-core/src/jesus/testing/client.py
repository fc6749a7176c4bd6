"""`TestClient`: a user's services under test, called and sent events in memory.

    async with TestClient(calc) as client:
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3

The services are served by `jesus.serve` and called by a `jesus.Client`, the real ones, on
a network and a registry in memory (jesus.testing.memory): no socket, no file, no other
process. What a call goes through is what it goes through in production: the client's
checks, the channel's codec and compression under the limits, the server's call runner and
dispatcher (modes, schemas, channels, allow-lists, deadlines, stream credit). Nothing is
checked twice or checked differently.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from typing import Any

from jesus.config import Config
from jesus.plugins import Catalog, default_catalog
from jesus.runtime.client import Client
from jesus.runtime.node import Node, serve
from jesus.runtime.service import Service
from jesus.security.caller import ANONYMOUS, Caller
from jesus.testing.memory import Network, in_memory

__all__ = ["TestClient"]

_names = itertools.count(1)


class TestClient:
    """Serve `services` in memory and call them (`call`, `notify`, `stream`, `emit`), on
    whichever anyio backend the test runs.

    `caller` is who the calls come from, as a transport would prove it: a name (as a client
    certificate would name it) or a `jesus.Caller`; by default an anonymous caller, which an
    `allow=` list refuses. `timeout` is the client's default deadline. `client` holds other
    `jesus.Client` options (`userid`, `validate`, ...); other keyword arguments go to
    `jesus.serve` (`limits`, `compatibility`, `config`, ...). Configuration from the
    environment is not read unless `config` is given: a test sees only what it says.

    Inside the block, `node` is the running `jesus.Node` and `client` the `jesus.Client`;
    the services' own calls and emits (`svc.call`, `svc.emit` in a handler) stay in memory
    too, among the services given here.
    """

    __test__ = False  # a class pytest must not take for a test case

    def __init__(
        self,
        *services: Service,
        caller: str | Caller | None = None,
        timeout: float | None = 30.0,
        client: Mapping[str, Any] | None = None,
        catalog: Catalog | None = None,
        **serve_options: Any,
    ) -> None:
        self.services = services
        self.caller = Caller(caller, "tls") if isinstance(caller, str) else caller or ANONYMOUS
        self.timeout = timeout
        self._client_options = dict(client or {})
        self._catalog = catalog or default_catalog()
        self._serve_options = serve_options
        self._stack = contextlib.AsyncExitStack()
        self._node: Node | None = None
        self._client: Client | None = None

    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("use it as `async with TestClient(...) as client:`")
        return self._node

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("use it as `async with TestClient(...) as client:`")
        return self._client

    async def __aenter__(self) -> TestClient:
        network = Network()
        registry = f"memory://test-{next(_names)}"
        options = {"config": Config(), **self._serve_options}
        options.setdefault("registry", registry)
        stack = contextlib.AsyncExitStack()
        async with stack:
            self._node = await stack.enter_async_context(
                serve(*self.services, catalog=in_memory(self._catalog, network), **options)
            )
            self._client = await stack.enter_async_context(
                Client(
                    options["registry"],
                    timeout=self.timeout,
                    catalog=in_memory(self._catalog, network, self.caller),
                    **self._client_options,
                )
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._stack.aclose()
        finally:
            self._node = self._client = None

    async def call(self, target: str, data: Any = None, **kwargs: Any) -> Any:
        """As `jesus.Client.call`: the result, or None once acked (ack, noResponse)."""
        return await self.client.call(target, data, **kwargs)

    async def notify(self, target: str, data: Any = None, **kwargs: Any) -> None:
        await self.client.notify(target, data, **kwargs)

    def stream(self, target: str, data: Any = None, **kwargs: Any) -> AsyncIterator[Any]:
        return self.client.stream(target, data, **kwargs)

    async def emit(self, event: str, data: Any = None, **kwargs: Any) -> list[str]:
        """As `jesus.Client.emit`: deliver to every listener group; the groups reached."""
        return await self.client.emit(event, data, **kwargs)
