"""What each `jesus` subcommand does."""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from functools import partial
from typing import Any

import anyio

from jesus.errors import CallError, EventNotDelivered, JesusError
from jesus.plugins import default_catalog
from jesus.registry.open import open_registry, registry_url
from jesus.runtime.client import Client
from jesus.runtime.node import serve as serve_services
from jesus.runtime.service import Service
from jesus.security.credentials import Credentials


def _run(args: argparse.Namespace, fn: Any, *fn_args: Any) -> Any:
    return anyio.run(partial(fn, *fn_args), backend=args.backend)


def _fail(message: str, code: int = 1) -> int:
    print(f"jesus: {message}", file=sys.stderr)
    return code


def _credentials(args: argparse.Namespace) -> Credentials | None:
    """The TLS options, each falling back to its environment variable."""
    given = [args.ca, args.cert, args.key]
    if not any(given):
        return Credentials.from_env()
    return Credentials.load(*given)


# ---------------------------------------------------------------- plugins


def plugins(args: argparse.Namespace) -> int:
    catalog = default_catalog()
    if args.json:
        print(
            json.dumps(
                {
                    "plugins": catalog.contributions,
                    "failures": [{"plugin": f.name, "error": f.error} for f in catalog.failures],
                },
                indent=2,
            )
        )
        return 1 if catalog.failures else 0
    for name in catalog.plugin_names:
        print(name)
        for item in catalog.contributions.get(name, []):
            kind, _, what = item.partition(":")
            print(f"    {kind:<12} {what}")
    validator = catalog.validators[0].name if catalog.validators else "none"
    json_backend = getattr(catalog.codecs.get("json"), "backend", "?")
    print(f"\nmessages are checked with: {validator}; json codec backend: {json_backend}")
    for failure in catalog.failures:
        print(f"FAILED TO LOAD {failure.name}: {failure.error}", file=sys.stderr)
    return 1 if catalog.failures else 0


# ---------------------------------------------------------------- serve


def load_services(target: str) -> list[Service]:
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise JesusError(f"{target!r} must be MODULE:ATTR")
    if "" not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    value = getattr(module, attr)
    if callable(value) and not isinstance(value, Service):
        value = value()
    found = [value] if isinstance(value, Service) else list(value)
    if not found or not all(isinstance(s, Service) for s in found):
        raise JesusError(f"{target} is not a Service or a list of Services")
    return found


def serve(args: argparse.Namespace) -> int:
    try:
        services = load_services(args.target)
        bind = dict(b.split("=", 1) for b in args.bind)
        tls = _credentials(args)
    except (JesusError, ImportError, AttributeError, ValueError) as exc:
        return _fail(str(exc), 2)
    try:
        _run(args, _serve, services, args, bind, tls)
    except JesusError as exc:
        return _fail(str(exc))
    return 0


async def _serve(
    services: list[Service],
    args: argparse.Namespace,
    bind: dict[str, str],
    tls: Credentials | None,
) -> None:
    # Started outside the task group, so that a refusal to start (a JesusError) comes out
    # as itself, not wrapped in an exception group.
    async with serve_services(
        *services,
        registry=args.registry,
        bind=bind,
        drain_timeout=args.drain_timeout,
        tls=tls,
        allow_plaintext=args.allow_plaintext,
        metrics=args.metrics,
    ) as node:
        names = ", ".join(f"{s.name} {s.version}" for s in services)
        print(f"serving {names} on {' '.join(node.endpoints.values())}", flush=True)
        if node.metrics is not None:
            print(f"metrics on {node.metrics}", flush=True)
        await until_signalled()
    print("stopped", file=sys.stderr, flush=True)


async def until_signalled() -> None:
    """Return at the first SIGINT or SIGTERM (what a command serves until)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(f"received {signal.Signals(signum).name}: draining", file=sys.stderr)
            return


# ---------------------------------------------------------------- call


def call(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        return _fail(f"DATA is not JSON: {exc}", 2)
    try:
        return int(_run(args, _call, args, data))
    except CallError as exc:
        print(f"jesus: {exc}", file=sys.stderr)
        if exc.details:
            for line in exc.details if isinstance(exc.details, list) else [exc.details]:
                print(f"    {line}", file=sys.stderr)
        return 1
    except JesusError as exc:
        return _fail(str(exc))


async def _call(args: argparse.Namespace, data: Any) -> int:
    async with Client(
        args.registry,
        name="jesus-cli",
        timeout=args.timeout,
        userid=args.userid,
        tls=_credentials(args),
    ) as client:
        service, _, method = args.target.partition(".")
        records = await client.resolver.pick(service)
        declared = next((r.methods[method] for r in records if method in r.methods), None)
        if declared is not None and declared.mode.value == "stream":
            async for item in client.stream(args.target, data):
                print(json.dumps(item, default=repr), flush=True)
            return 0
        result = await client.call(args.target, data)
        print(json.dumps(result, indent=2, default=repr))
        return 0


# ---------------------------------------------------------------- emit


def emit(args: argparse.Namespace) -> int:
    try:
        data = json.loads(args.data)
    except json.JSONDecodeError as exc:
        return _fail(f"DATA is not JSON: {exc}", 2)
    try:
        groups = _run(args, _emit, args, data)
    except EventNotDelivered as exc:
        print(f"jesus: {exc}", file=sys.stderr)
        return 1
    except JesusError as exc:
        return _fail(str(exc))
    print(json.dumps({"event": args.event, "delivered_to": groups}))
    return 0


async def _emit(args: argparse.Namespace, data: Any) -> list[str]:
    async with Client(
        args.registry, name="jesus-cli", timeout=args.timeout, tls=_credentials(args)
    ) as client:
        mode = "ack" if args.ack else "noResponse"
        return await client.emit(args.event, data, mode=mode, broadcast=args.broadcast)


# ---------------------------------------------------------------- check


def check(args: argparse.Namespace) -> int:
    from jesus.compat.check import check_registry

    try:
        records = _run(args, _list, args.registry)
    except JesusError as exc:
        return _fail(str(exc))
    report = check_registry(records, args.mode)
    services = sorted({r.service for r in records})
    print(f"{len(records)} instances of {len(services)} services: {', '.join(services) or 'none'}")
    print(report.text())
    return 0 if report.ok else 1


# ---------------------------------------------------------------- services


def services(args: argparse.Namespace) -> int:
    try:
        records = _run(args, _list, args.registry)
    except JesusError as exc:
        return _fail(str(exc))
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=2))
        return 0
    if not records:
        print(f"no live services in {registry_url(args.registry)}")
        return 0
    for record in records:
        print(
            f"{record.service} {record.version}  instance {record.instance_id}  "
            f"pid {record.pid}@{record.host}"
        )
        for scheme, endpoint in record.endpoints.items():
            print(f"    {scheme:<6} {endpoint}")
        for name, m in sorted(record.methods.items()):
            sealed = f" sealed {m.seal}" if m.seal else ""
            print(
                f"  {record.service}.{name}  [{m.mode.value}{sealed}] over {', '.join(m.channels)}"
            )
            if m.description:
                print(f"      {m.description.splitlines()[0]}")
            print(f"      request:  {json.dumps(m.request)}")
            print(f"      response: {json.dumps(m.response)}")
        for event, spec in sorted(record.listens.items()):
            print(f"  listens {event}  group {spec.get('group')} over {spec.get('channel')}")
            print(f"      schema:   {json.dumps(spec.get('schema'))}")
        for event, spec in sorted(record.emits.items()):
            print(f"  emits   {event}  [{spec.get('mode')}]")
            print(f"      schema:   {json.dumps(spec.get('schema'))}")
    return 0


async def _list(url: str | None) -> list[Any]:
    backend = open_registry(url, default_catalog())
    try:
        return await backend.list_instances()
    finally:
        await backend.aclose()


# ---------------------------------------------------------------- ca


def ca_init(args: argparse.Namespace) -> int:
    from jesus.security import devca

    try:
        made = devca.create_ca(args.dir)
    except JesusError as exc:
        return _fail(str(exc))
    print(f"created {made.certificate} and {made.key} (keep the key private)")
    print(f"next: jesus ca issue NAME --dir {args.dir}")
    return 0


def ca_issue(args: argparse.Namespace) -> int:
    from jesus.security import devca

    try:
        made = devca.issue(args.dir, args.name, tuple(args.host), args.days)
    except JesusError as exc:
        return _fail(str(exc))
    print(f"issued {made.certificate} and {made.key} for {args.name!r}")
    print(f"use: --ca {args.dir}/{devca.CA_CERT} --cert {made.certificate} --key {made.key}")
    return 0


# ---------------------------------------------------------------- demo


def demo(args: argparse.Namespace) -> int:
    from jesus.cli.demo import run_demo

    return run_demo(args.backend, args.timeout)
