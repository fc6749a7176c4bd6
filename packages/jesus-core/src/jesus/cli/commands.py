"""What each `jesus` subcommand does. A command raises what went wrong; `jesus.cli.main`
turns it into one line (jesus.cli.failures)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
import time
from functools import partial
from typing import Any

import anyio

from jesus.cli.failures import UsageError
from jesus.cli.narrate import Narrator, narrated
from jesus.config import Config
from jesus.errors import ConfigurationError, EventNotDelivered, JesusError
from jesus.plugins import default_catalog
from jesus.registry.open import open_registry, registry_url
from jesus.runtime.client import Client, parse_target
from jesus.runtime.metrics import open_metrics
from jesus.runtime.node import serve as serve_services
from jesus.runtime.service import Service
from jesus.security.credentials import Credentials

log = logging.getLogger("jesus.cli")


def _run(args: argparse.Namespace, fn: Any, *fn_args: Any) -> Any:
    return anyio.run(partial(fn, *fn_args), backend=args.backend)


def _json_data(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"DATA is not JSON: {exc}") from None


def _configured(args: argparse.Namespace) -> Config:
    """The --config file (else $JESUS_CONFIG) and the environment's settings; the registry
    they name becomes the command's, unless --registry or $JESUS_REGISTRY names one."""
    settings = Config.load(args.config)
    args.registry = settings.registry_for(args.registry)
    return settings


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
    if not sep or not module_name or not attr:
        raise UsageError(f"{target!r} must be MODULE:ATTR")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module_name.startswith(exc.name):
            raise JesusError(f"importing {module_name} failed: {exc}") from exc
        raise UsageError(
            f"no module named {exc.name!r} (run from the directory that holds it, "
            "or add that directory to PYTHONPATH)"
        ) from None
    except Exception as exc:
        raise JesusError(
            f"importing {module_name} failed: {type(exc).__name__}: {exc} "
            "(jesus -v ... shows the traceback)"
        ) from exc
    try:
        value = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module {module_name} has no attribute {attr!r}") from None
    if callable(value) and not isinstance(value, Service):
        value = value()
    found = [value] if isinstance(value, Service) else list(value)
    if not found or not all(isinstance(s, Service) for s in found):
        raise UsageError(f"{target} is not a Service or a list of Services")
    return found


def _bind(given: list[str]) -> dict[str, str]:
    bind = {}
    for item in given:
        scheme, sep, address = item.partition("=")
        if not sep or not scheme or not address:
            raise UsageError(f"--bind {item!r} must be SCHEME=ADDRESS, e.g. tcp=127.0.0.1:4000")
        bind[scheme] = address
    return bind


def serve(args: argparse.Namespace) -> int:
    settings = _configured(args)
    services = load_services(args.target)
    bind = _bind(args.bind)
    tls = _credentials(args)
    _run(args, _serve, services, args, bind, tls, settings)
    return 0


async def _serve(
    services: list[Service],
    args: argparse.Namespace,
    bind: dict[str, str],
    tls: Credentials | None,
    settings: Config,
) -> None:
    if args.daemon is not None:
        await _provide(services, args, settings)
        return
    async with serve_services(
        *services,
        config=settings,
        registry=args.registry,
        bind=bind,
        drain_timeout=args.drain_timeout,
        compatibility=None if args.compatibility == "none" else args.compatibility,
        on_incompatible=args.on_incompatible,
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


async def _provide(services: list[Service], args: argparse.Namespace, settings: Config) -> None:
    try:
        from jesus_daemon import provide
    except ImportError:
        raise ConfigurationError(
            "--daemon needs the node daemon's package: pip install 'jesus-core[daemon]'"
        ) from None
    for line in settings.apply(services):
        log.info("configured: %s", line)
    metrics = None
    if args.metrics is not None:
        metrics = await open_metrics(args.metrics, services[0].name, default_catalog())
    try:
        async with provide(*services, socket=args.daemon, limits=settings.limits_over()):
            names = ", ".join(f"{s.name} {s.version}" for s in services)
            print(f"serving {names} through the daemon at {args.daemon}", flush=True)
            if metrics is not None:
                print(f"metrics on {metrics.url}", flush=True)
            await until_signalled()
    finally:
        if metrics is not None:
            await metrics.aclose()
    print("stopped", file=sys.stderr, flush=True)


async def until_signalled() -> None:
    """Return at the first SIGINT or SIGTERM (what a command serves until)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(f"received {signal.Signals(signum).name}: draining", file=sys.stderr)
            return


# ---------------------------------------------------------------- call


def call(args: argparse.Namespace) -> int:
    settings = _configured(args)
    data = _json_data(args.data)
    return int(_run(args, _call, args, data, settings))


async def _call(args: argparse.Namespace, data: Any, settings: Config) -> int:
    narrator = Narrator()
    async with Client(
        args.registry,
        limits=settings.limits_over(),
        name="jesus-cli",
        userid=args.userid,
        tls=_credentials(args),
        catalog=narrated(narrator),
        strategy=args.strategy,
    ) as client:
        service, method, _ = parse_target(args.target)
        records = await client.resolver.pick(service)
        declared = next((r.methods[method] for r in records if method in r.methods), None)
        # No --timeout: the method's own default, as its provider published it, else 30 s.
        timeout = args.timeout
        if declared is not None and declared.mode.value == "stream":
            started = time.perf_counter()
            count = 0
            async for item in client.stream(args.target, data, timeout=timeout):
                print(json.dumps(item, default=repr), flush=True)
                count += 1
            log.info("%s: %d item(s) in %.1f ms", args.target, count, _since(started))
            return 0
        result = await client.call(args.target, data, timeout=timeout)
        print(json.dumps(result, indent=2, default=repr))
        return 0


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# ---------------------------------------------------------------- emit


def emit(args: argparse.Namespace) -> int:
    settings = _configured(args)
    data = _json_data(args.data)
    groups = _run(args, _emit, args, data, settings)
    print(json.dumps({"event": args.event, "delivered_to": groups}))
    return 0


async def _emit(args: argparse.Namespace, data: Any, settings: Config) -> list[str]:
    narrator = Narrator()
    async with Client(
        args.registry,
        limits=settings.limits_over(),
        name="jesus-cli",
        timeout=args.timeout,
        tls=_credentials(args),
        catalog=narrated(narrator),
    ) as client:
        mode = "ack" if args.ack else "noResponse"
        groups = await client.emit(args.event, data, mode=mode, broadcast=args.broadcast)
    if not groups:
        if narrator.failures:
            raise EventNotDelivered(args.event, narrator.failures, [])
        raise JesusError(
            f"no live service listens to {args.event!r} in {registry_url(args.registry)}: "
            "the event went nowhere"
        )
    return groups


# ---------------------------------------------------------------- check


def check(args: argparse.Namespace) -> int:
    from jesus.compat.check import check_registry

    settings = _configured(args)
    records = _run(args, _list, args.registry)
    report = check_registry(records, args.mode)
    services = sorted({r.service for r in records})
    print(f"{len(records)} instances of {len(services)} services: {', '.join(services) or 'none'}")
    print(report.text())
    drift = settings.drift(records)
    for line in drift:
        print(f"CONFIG       {line}")
    if settings.overrides:
        sources = " and ".join(settings.sources)
        print(f"channels as configured by {sources}: {len(drift) or 'no'} difference(s)")
    return 0 if report.ok and not drift else 1


# ---------------------------------------------------------------- services


def services(args: argparse.Namespace) -> int:
    _configured(args)
    records = _run(args, _list, args.registry)
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

    made = devca.create_ca(args.dir)
    print(f"created {made.certificate} and {made.key} (keep the key private)")
    print(f"next: jesus ca issue NAME --dir {args.dir}")
    return 0


def ca_issue(args: argparse.Namespace) -> int:
    from jesus.security import devca

    made = devca.issue(args.dir, args.name, tuple(args.host), args.days)
    print(f"issued {made.certificate} and {made.key} for {args.name!r}")
    print(f"use: --ca {args.dir}/{devca.CA_CERT} --cert {made.certificate} --key {made.key}")
    return 0


# ---------------------------------------------------------------- demo


def demo(args: argparse.Namespace) -> int:
    from jesus.cli.demo import run_demo

    return run_demo(args.backend, args.timeout)
