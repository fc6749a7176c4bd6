"""jesus node daemon: one per node on a unix socket, through which a local process in any
language calls services and emits events by name (PROTOCOL.md, "Node daemon").

    relay    the calls of local processes, carried on to the registry's services
    daemon   run_daemon: the socket, and the Client that carries the calls
    cli      `jesus daemon`
"""

from jesus_daemon.daemon import DEFAULT_SOCKET, Daemon, run_daemon
from jesus_daemon.relay import Relay

__all__ = ["DEFAULT_SOCKET", "Daemon", "Relay", "run_daemon"]
