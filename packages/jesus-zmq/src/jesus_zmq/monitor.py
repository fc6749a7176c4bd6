"""libzmq connects, reconnects and drops connections silently; its monitor socket says when,
so that a refused connection or the calls waiting on a lost one fail at once rather than at
a timeout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zmq.utils.monitor import parse_monitor_message

import zmq
from jesus_zmq.pump import SocketPump

# A connection closed, or (client) a connect was refused and will be retried.
GONE = zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
REFUSED = zmq.EVENT_CONNECT_RETRIED


class Monitor:
    """The events of `sock` from the moment this is made: made before the socket connects, it
    misses no event of the first connection (a handshake refused at once)."""

    def __init__(self, sock: zmq.Socket[Any], events: int) -> None:
        self._sock = sock
        self._events = events
        self._monitor = sock.get_monitor_socket(events)

    async def watch(self, on_event: Callable[[int], None]) -> None:
        """Call `on_event(event)` for each event watched, until cancelled; then close."""
        events = self._events

        def on_message(parts: list[bytes]) -> None:
            event = parse_monitor_message(parts)["event"]
            if event & events:
                on_event(event)

        try:
            await SocketPump(self._monitor, on_message).run()
        finally:
            self.close()

    def close(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass  # the socket closed first
        self._monitor.close(linger=0)


async def watch(sock: zmq.Socket[Any], events: int, on_event: Callable[[int], None]) -> None:
    """Call `on_event(event)` for each of `events` that happens on `sock`, until cancelled."""
    await Monitor(sock, events).watch(on_event)
