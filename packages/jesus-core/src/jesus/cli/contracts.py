"""`jesus docs` and `jesus graph`: contracts and a picture of the system, from a service
module (MODULE:ATTR, as `jesus serve` loads it) or from what the registry holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from jesus.cli.failures import UsageError

DOC_KINDS = ("openapi", "asyncapi", "markdown")
GRAPH_FORMATS = ("mermaid", "dot", "svg")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "docs", help="generate an OpenAPI, AsyncAPI or markdown contract of the services"
    )
    p.add_argument("kind", choices=DOC_KINDS)
    _source_options(p)
    p.add_argument("--title", default=None, help="the document's title")
    p.set_defaults(func=docs)

    p = sub.add_parser(
        "graph", help="draw services, methods, events, and who uses or listens to what"
    )
    _source_options(p)
    p.add_argument("--format", choices=GRAPH_FORMATS, default="mermaid")
    p.set_defaults(func=graph)


def _source_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "target",
        nargs="?",
        default=None,
        metavar="MODULE:ATTR",
        help="a Service or a list of them; without it, what the registry holds",
    )
    p.add_argument(
        "--registry",
        default=None,
        help="registry URL (default: $JESUS_REGISTRY, the config's, or embedded://)",
    )
    p.add_argument("--config", default=None, metavar="FILE", help="TOML settings")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write here, not stdout")


def _contracts(args: argparse.Namespace) -> list[Any]:
    from jesus.cli import commands
    from jesus.contracts import from_records, from_services

    settings = commands._configured(args)
    if args.target is not None:
        services = commands.load_services(args.target)
        settings.apply(services)  # the channels a configured deployment would serve
        return from_services(services)
    records = commands._run(args, commands._list, args.registry)
    if not records:
        from jesus.registry.open import registry_url

        raise UsageError(
            f"no live services in {registry_url(args.registry)}: name a MODULE:ATTR, "
            "or serve the services first"
        )
    return from_records(records)


def _write(args: argparse.Namespace, text: str) -> None:
    if args.output is None:
        print(text, end="" if text.endswith("\n") else "\n")
        return
    try:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write {args.output}: {exc.strerror or exc}") from None


def docs(args: argparse.Namespace) -> int:
    contracts = _contracts(args)
    if args.kind == "markdown":
        from jesus.contracts.markdown import markdown

        _write(args, markdown(contracts))
        return 0
    if args.kind == "openapi":
        from jesus.contracts.openapi import openapi

        doc = openapi(contracts, args.title)
    else:
        from jesus.contracts.asyncapi import asyncapi

        doc = asyncapi(contracts, args.title)
    _write(args, json.dumps(doc, indent=2))
    return 0


def graph(args: argparse.Namespace) -> int:
    from jesus.contracts import graph as draw

    contracts = _contracts(args)
    text = {"mermaid": draw.mermaid, "dot": draw.dot, "svg": draw.svg}[args.format](contracts)
    _write(args, text)
    return 0
