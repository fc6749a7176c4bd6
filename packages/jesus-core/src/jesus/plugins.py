"""Building the plugin manager and the catalog of what plugins contribute.

Environment switches:
- JESUS_LOAD_PLUGINS=name1,name2 loads only those entry points ("" loads none but the core's).
- JESUS_TRACE_PLUGINS=1 logs each plugin as it loads.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pluggy

from jesus import hookspecs
from jesus.errors import ConfigurationError
from jesus.routing.strategies import BUILTIN as BUILTIN_STRATEGIES

log = logging.getLogger("jesus.plugins")

ENTRY_POINT_GROUP = "jesus"
BUILTIN_PLUGINS = ("jesus.builtins",)


@dataclass
class PluginFailure:
    name: str
    error: str


@dataclass
class Catalog:
    """Everything the installed plugins contribute, by name, with who contributed it."""

    codecs: dict[str, Any] = field(default_factory=dict)
    compressions: dict[str, Any] = field(default_factory=dict)
    transports: dict[str, Any] = field(default_factory=dict)
    validators: list[Any] = field(default_factory=list)
    registries: dict[str, Any] = field(default_factory=dict)
    middleware: list[Any] = field(default_factory=list)
    # load-balancing strategy name -> factory (jesus.routing.strategies)
    strategies: dict[str, Any] = field(default_factory=dict)
    # plugin name -> list of "kind:name" it contributed
    contributions: dict[str, list[str]] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    plugin_names: list[str] = field(default_factory=list)


def get_plugin_manager(
    load_entry_points: bool = True,
) -> tuple[pluggy.PluginManager, list[PluginFailure]]:
    """A plugin manager with the hook specs, the core's plugins and the installed entry points.

    A plugin that fails to import or register is reported in the returned failures and
    leaves the others loaded.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    trace = bool(os.environ.get("JESUS_TRACE_PLUGINS"))
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register(module, name=module_name)
    failures: list[PluginFailure] = []
    if not load_entry_points:
        return pm, failures
    allowed = os.environ.get("JESUS_LOAD_PLUGINS")
    allow = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    installed = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    if allow is not None:
        _warn_unknown(allow, {ep.name for ep in installed})
    for ep in installed:
        if allow is not None and ep.name not in allow:
            continue
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            failures.append(PluginFailure(ep.name, f"{type(exc).__name__}: {exc}"))
            log.error("jesus plugin %r failed to load: %s", ep.name, exc)
            continue
        if trace:
            log.warning("jesus plugin %r loaded from %s", ep.name, ep.value)
    return pm, failures


def _warn_unknown(allowed: set[str], installed: set[str]) -> None:
    """A name in JESUS_LOAD_PLUGINS that no installed plugin has is a typo or a missing
    install: either way what it meant to load is not there."""
    unknown = sorted(allowed - installed - set(BUILTIN_PLUGINS))
    if unknown:
        log.warning(
            "JESUS_LOAD_PLUGINS names %s, which no installed plugin is (installed: %s)",
            ", ".join(repr(n) for n in unknown),
            ", ".join(sorted(installed)) or "none",
        )


def build_catalog(pm: pluggy.PluginManager, failures: list[PluginFailure]) -> Catalog:
    catalog = Catalog(failures=list(failures))

    for plugin_name, plugin in pm.list_name_plugin():
        catalog.plugin_names.append(plugin_name)
        contributed = catalog.contributions.setdefault(plugin_name, [])

        def call(
            hook_name: str, register: Any, _plugin: Any = plugin, _name: str = plugin_name
        ) -> None:
            impl = getattr(_plugin, hook_name, None)
            if impl is None:
                return
            try:
                impl(register=register)
            except Exception as exc:
                catalog.failures.append(PluginFailure(_name, f"{hook_name}: {exc}"))
                log.error("jesus plugin %r failed in %s: %s", _name, hook_name, exc)

        def named(
            kind: str, table: dict[str, Any], _c: list[str] = contributed, _n: str = plugin_name
        ) -> Any:
            def register(obj: Any) -> None:
                if obj.name in table:
                    raise ConfigurationError(f"{kind} {obj.name!r} is already registered")
                table[obj.name] = obj
                _c.append(f"{kind}:{obj.name}")

            return register

        def register_transport(obj: Any, _c: list[str] = contributed) -> None:
            if obj.scheme in catalog.transports:
                raise ConfigurationError(f"transport {obj.scheme!r} is already registered")
            catalog.transports[obj.scheme] = obj
            _c.append(f"transport:{obj.scheme}")

        def register_validator(obj: Any, _c: list[str] = contributed) -> None:
            catalog.validators.append(obj)
            _c.append(f"validator:{obj.name}")

        def register_registry(scheme: str, factory: Any, _c: list[str] = contributed) -> None:
            catalog.registries[scheme] = factory
            _c.append(f"registry:{scheme}")

        def register_strategy(name: str, factory: Any, _c: list[str] = contributed) -> None:
            if name in catalog.strategies or name in BUILTIN_STRATEGIES:
                raise ConfigurationError(f"strategy {name!r} is already registered")
            catalog.strategies[name] = factory
            _c.append(f"strategy:{name}")

        def register_middleware(obj: Any, _c: list[str] = contributed) -> None:
            catalog.middleware.append(obj)
            _c.append(f"middleware:{getattr(obj, 'name', type(obj).__name__)}")

        call("jesus_register_codecs", named("codec", catalog.codecs))
        call("jesus_register_compressions", named("compression", catalog.compressions))
        call("jesus_register_transports", register_transport)
        call("jesus_register_validators", register_validator)
        call("jesus_register_registries", register_registry)
        call("jesus_register_middleware", register_middleware)
        call("jesus_register_strategies", register_strategy)

    catalog.validators.sort(key=lambda b: -b.priority)
    return catalog


@cache
def default_catalog() -> Catalog:
    """The process-wide catalog, built on first use (never at import time)."""
    pm, failures = get_plugin_manager()
    return build_catalog(pm, failures)
