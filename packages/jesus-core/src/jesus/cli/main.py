"""`jesus` command line: plugins, serve, call, emit, check, services, ca, demo, and the
commands that installed distributions add (entry point group `jesus.commands`: a callable
that takes the subparsers and adds its own)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from importlib.metadata import entry_points

from jesus.cli import commands, failures
from jesus.cli import contracts as contract_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jesus", description="RPC and events between services over pluggable channels."
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log what happens (each call and delivery), and a failure's traceback",
    )
    parser.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default=os.environ.get("JESUS_BACKEND", "asyncio"),
        help="anyio backend to run on (default asyncio, or $JESUS_BACKEND)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def registry_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--registry",
            default=None,
            help="registry URL (default: $JESUS_REGISTRY, the config's, or embedded://)",
        )
        p.add_argument(
            "--config",
            default=None,
            metavar="FILE",
            help="TOML settings: channels of methods and listeners, limits, registry "
            "(default: $JESUS_CONFIG; docs/configuration.md)",
        )

    def tls_options(p: argparse.ArgumentParser) -> None:
        group = p.add_argument_group("TLS (default: $JESUS_CA, $JESUS_CERT, $JESUS_KEY)")
        group.add_argument("--ca", default=None, help="CA certificates to trust (PEM)")
        group.add_argument("--cert", default=None, help="this end's certificate (PEM)")
        group.add_argument("--key", default=None, help="the certificate's private key (PEM)")

    p = sub.add_parser("plugins", help="list installed plugins and what each contributes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=commands.plugins)

    p = sub.add_parser("serve", help="serve the services of MODULE:ATTR until Ctrl-C/SIGTERM")
    p.add_argument("target", metavar="MODULE:ATTR", help="a Service, or a list of them")
    registry_option(p)
    p.add_argument(
        "--bind",
        action="append",
        default=[],
        metavar="SCHEME=ADDRESS",
        help="where a transport listens, e.g. tcp=127.0.0.1:4000 or unix=/run/svc.sock",
    )
    p.add_argument("--drain-timeout", type=float, default=10.0, help="seconds to finish calls")
    p.add_argument(
        "--compatibility",
        choices=("backward", "forward", "full", "none"),
        default="backward",
        help="rule against the running versions of these services (default: backward; "
        "none skips the check)",
    )
    p.add_argument(
        "--on-incompatible",
        choices=("refuse", "warn"),
        default="refuse",
        help="refuse to start (default), or start and log the report",
    )
    p.add_argument(
        "--allow-plaintext",
        action="append",
        default=[],
        metavar="SCHEME",
        help="with TLS, serve this transport's methods unprotected anyway (e.g. udp)",
    )
    p.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs jesus-otel)",
    )
    p.add_argument(
        "--daemon",
        default=None,
        metavar="SOCKET",
        help="offer the services through the node daemon listening on SOCKET, which serves "
        "them on their channels (jesus-core[daemon]); --bind and TLS are then the daemon's",
    )
    tls_options(p)
    p.set_defaults(func=commands.serve)

    p = sub.add_parser("call", help="call SERVICE.METHOD with JSON data and print the result")
    p.add_argument("target", metavar="SERVICE.METHOD", help="or SERVICE@VERSIONS.METHOD")
    p.add_argument("data", nargs="?", default="null", metavar="JSON")
    p.add_argument(
        "--timeout", type=float, default=None, help="seconds (default: the method's, else 30)"
    )
    p.add_argument("--userid", default=None)
    p.add_argument(
        "--strategy",
        default=None,
        help="round_robin (default), random, least_inflight, latency, prefer_local",
    )
    registry_option(p)
    tls_options(p)
    p.set_defaults(func=commands.call)

    p = sub.add_parser("emit", help="emit EVENT with JSON data to every listener group")
    p.add_argument("event", metavar="EVENT")
    p.add_argument("data", nargs="?", default="null", metavar="JSON")
    p.add_argument("--ack", action="store_true", help="wait until every group acknowledged")
    p.add_argument("--broadcast", action="store_true", help="every instance, not one per group")
    p.add_argument("--timeout", type=float, default=30.0)
    registry_option(p)
    tls_options(p)
    p.set_defaults(func=commands.emit)

    p = sub.add_parser(
        "check", help="check the running services' schemas against each other (exit 1 if not)"
    )
    p.add_argument(
        "--mode",
        choices=("backward", "forward", "full"),
        default="backward",
        help="rule for versions of one service (default: backward)",
    )
    registry_option(p)
    tls_options(p)
    p.set_defaults(func=commands.check)

    p = sub.add_parser("services", help="what the registry knows, with schemas")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    registry_option(p)
    tls_options(p)
    p.set_defaults(func=commands.services)

    p = sub.add_parser("ca", help="a development CA: create one, issue certificates from it")
    ca = p.add_subparsers(dest="ca_command", required=True, metavar="ACTION")
    q = ca.add_parser("init", help="create ca.pem and ca.key in --dir")
    q.add_argument("--dir", default="certs", help="where the CA lives (default: ./certs)")
    q.set_defaults(func=commands.ca_init)
    q = ca.add_parser("issue", help="issue NAME.pem and NAME.key from the CA in --dir")
    q.add_argument("name", metavar="NAME", help="the service (or client) the certificate names")
    q.add_argument("--dir", default="certs", help="where the CA lives (default: ./certs)")
    q.add_argument(
        "--host",
        action="append",
        default=[],
        help="another host name or IP it serves on (it always covers this machine)",
    )
    q.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    q.set_defaults(func=commands.ca_issue)

    p = sub.add_parser(
        "demo", help="services in separate processes talking over every installed channel"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for the whole demo")
    p.set_defaults(func=commands.demo)
    contract_commands.add_parsers(sub)  # docs, graph
    for entry in entry_points(group="jesus.commands"):  # e.g. `daemon`, from jesus-daemon
        try:
            entry.load()(sub)
        except Exception as exc:
            print(f"jesus: the {entry.name} command did not load: {exc}", file=sys.stderr)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except BaseException as exc:  # every failure is one line, whatever raised it
        if isinstance(exc, SystemExit):
            raise
        return failures.report(exc, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
