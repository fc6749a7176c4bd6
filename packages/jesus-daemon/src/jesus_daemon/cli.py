"""`jesus daemon`: added to the `jesus` command by the `jesus.commands` entry point."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from typing import Any

import anyio

from jesus.cli.commands import until_signalled
from jesus.errors import ConfigurationError, JesusError
from jesus.security.credentials import Credentials
from jesus_daemon.daemon import DEFAULT_SOCKET, daemon_socket, run_daemon
from jesus_daemon.identity import Identities


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "daemon",
        help="one per node: local processes in any language call and emit through its socket",
    )
    p.add_argument(
        "--socket",
        default=daemon_socket(),
        help=f"the unix socket to listen on (default: $JESUS_DAEMON_SOCKET or {DEFAULT_SOCKET})",
    )
    p.add_argument(
        "--socket-mode",
        type=partial(int, base=8),
        default=0o600,
        metavar="OCTAL",
        help="the socket's permissions (default 600: the daemon's user only; 660 opens it "
        "to the group)",
    )
    p.add_argument(
        "--registry", default=None, help="registry URL (default: $JESUS_REGISTRY or embedded://)"
    )
    p.add_argument(
        "--health",
        default=os.environ.get("JESUS_DAEMON_HEALTH") or None,
        metavar="HOST:PORT",
        help="serve GET /livez and /readyz (ready once the registry answers) over HTTP there, "
        "for an orchestrator's probes (default: $JESUS_DAEMON_HEALTH, else not served)",
    )
    p.add_argument(
        "--host",
        default=os.environ.get("JESUS_DAEMON_HOST") or None,
        help="the interface on which the services that local processes offer are served to "
        "other machines, each on a free port (default: $JESUS_DAEMON_HOST, else this "
        "machine only); 0.0.0.0 for all",
    )
    p.add_argument(
        "--advertise",
        default=os.environ.get("JESUS_ADVERTISE_HOST") or None,
        metavar="HOST",
        help="the host the registry shows for them, e.g. the node's IP "
        "(default: $JESUS_ADVERTISE_HOST)",
    )
    p.add_argument(
        "--identity",
        action="append",
        default=[],
        metavar="UID=NAME[,NAME]",
        help="a local process of this uid is these services: it may offer only them, and its "
        "calls go out with their certificate (repeatable; needs --certificates)",
    )
    p.add_argument(
        "--certificates",
        default=os.environ.get("JESUS_DAEMON_CERTIFICATES") or None,
        metavar="DIR",
        help="ca.pem and each identity's NAME.pem and NAME.key, as `jesus ca issue` lays them out "
        "(default: $JESUS_DAEMON_CERTIFICATES)",
    )
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        anyio.run(partial(_run, args), backend=args.backend)
    except JesusError as exc:
        print(f"jesus: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"jesus: cannot listen on {args.socket}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _run(args: argparse.Namespace) -> None:
    identities = None
    if args.identity:
        if args.certificates is None:
            raise ConfigurationError("--identity needs --certificates DIR")
        identities = Identities.parse(args.identity, args.certificates)
    async with run_daemon(
        args.socket,
        registry=args.registry,
        socket_mode=args.socket_mode,
        tls=Credentials.from_env(),
        health=args.health,
        host=args.host,
        advertise=args.advertise,
        identities=identities,
    ) as daemon:
        print(f"jesus daemon listening on {daemon.endpoint}", flush=True)
        if daemon.health is not None:
            print(f"health probes on http://{daemon.health}/livez and /readyz", flush=True)
        await until_signalled()
    print("stopped", file=sys.stderr, flush=True)
