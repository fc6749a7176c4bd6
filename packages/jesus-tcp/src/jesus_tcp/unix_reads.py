"""A guard for anyio's unix streams on asyncio (anyio 4.16 and before).

They wait for the socket with a future that the loop's reader callback resolves, and a
done-callback removes the reader. When a read is cancelled and the socket turns readable in
the same turn of the loop, before that done-callback runs, the reader resolves a cancelled
future: asyncio reports InvalidStateError from its callback (anyio's own fix, PR 1269, covers
`aclose()` only). This happens whenever a connection is closed while its peer still sends.
Here the callbacks resolve only futures that still wait; nothing else changes.
"""

from __future__ import annotations

import asyncio
from typing import Any


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def guard_unix_reads() -> None:
    try:
        from anyio._backends._asyncio import _RawSocketMixin
    except ImportError:  # another anyio: nothing to guard
        return
    if getattr(_RawSocketMixin, "_jesus_guarded", False) or not hasattr(
        _RawSocketMixin, "_wait_until_readable"
    ):
        return

    def _wait_until_readable(self: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        def done(f: object) -> None:
            del self._receive_future
            loop.remove_reader(self._raw_socket)

        f = self._receive_future = loop.create_future()
        loop.add_reader(self._raw_socket, _resolve, f)
        f.add_done_callback(done)
        return f

    def _wait_until_writable(self: Any, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        def done(f: object) -> None:
            del self._send_future
            loop.remove_writer(self._raw_socket)

        f = self._send_future = loop.create_future()
        loop.add_writer(self._raw_socket, _resolve, f)
        f.add_done_callback(done)
        return f

    _RawSocketMixin._wait_until_readable = _wait_until_readable  # type: ignore[method-assign]
    _RawSocketMixin._wait_until_writable = _wait_until_writable  # type: ignore[method-assign]
    _RawSocketMixin._jesus_guarded = True  # type: ignore[attr-defined]
