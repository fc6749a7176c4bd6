"""jesus node daemon: one per node on a unix socket, through which a local process in any
language calls services, emits events by name and offers services of its own (PROTOCOL.md,
"Node daemon").

    relay        the calls of local processes, carried on to the registry's services
    declaration  what a process offers (its HELLO's `provide`), checked and made Services
    providers    the daemon serving those Services, each call carried back to the process
    provider     provide(): a Python process offering its services through the daemon
    client       DaemonClient: a Python process calling and emitting through the daemon
    identity     which local process is which (its uid), and the certificates it calls with
    local_socket one unix socket speaking the framed protocol and HTTP
    daemon       run_daemon: the socket, and the Clients that carry the calls
    health       GET /livez and /readyz for an orchestrator's probes (docs/daemon.md)
    cli          `jesus daemon`
"""

from jesus_daemon.client import DaemonClient
from jesus_daemon.daemon import DEFAULT_SOCKET, Daemon, run_daemon
from jesus_daemon.identity import Identities
from jesus_daemon.provider import provide
from jesus_daemon.relay import Relay

__all__ = [
    "DEFAULT_SOCKET",
    "Daemon",
    "DaemonClient",
    "Identities",
    "Relay",
    "provide",
    "run_daemon",
]
