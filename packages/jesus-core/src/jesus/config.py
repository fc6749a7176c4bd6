"""Configuration outside the code: the channel of any method or listener, the limits and the
registry, from a TOML file and from environment variables (docs/configuration.md).

    registry = "memcache://10.0.0.5:11211"

    [limits]
    max_message_size = 1048576

    [channels.calc]           # methods of the service calc
    add = "tcp+msgpack+zstd"
    log = "udp+msgpack"

    [listeners.audit]         # listeners of the service audit, by event pattern
    "user.*" = ["udp+msgpack", "tcp"]

The environment overrides the file: JESUS_CONFIG names the file, JESUS_CHANNEL__CALC__ADD a
method's channel, JESUS_LISTENER__AUDIT__USER_ALL a listener's, JESUS_LIMIT__MAX_MESSAGE_SIZE
a limit (JESUS_REGISTRY was already the registry). A name in a variable matches a declared
one written in capitals, `*` as ALL and any other character but letters and digits as `_`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jesus.channel import ChannelSpec, parse_channels
from jesus.errors import ConfigurationError
from jesus.limits import Limits
from jesus.registry.base import InstanceRecord
from jesus.runtime.service import Service

__all__ = ["Config", "Override", "env_name"]

ENV_FILE = "JESUS_CONFIG"
ENV_REGISTRY = "JESUS_REGISTRY"
ENV_CHANNEL = "JESUS_CHANNEL__"
ENV_LISTENER = "JESUS_LISTENER__"
ENV_LIMIT = "JESUS_LIMIT__"
_KINDS = {"channels": "method", "listeners": "listener"}
_TOP_LEVEL = {"registry", "limits", *_KINDS}
_LIMITS = {f.name: f.type for f in dataclasses.fields(Limits)}


def env_name(name: str) -> str:
    """How a service, method or event pattern is written in a variable's name."""
    return re.sub(r"[^A-Z0-9]", "_", name.upper().replace("*", "ALL"))


@dataclass(frozen=True)
class Override:
    """One setting of a method's or listener's channels. `service` and `name` are as
    declared, or (`by_env_name`) as written in an environment variable's name."""

    kind: str  # "method" or "listener"
    service: str
    name: str
    channels: tuple[ChannelSpec, ...]
    source: str  # where it was set: the file and its table, or the variable
    by_env_name: bool = False

    def of(self, service: Service) -> bool:
        named = env_name(service.name) if self.by_env_name else service.name
        return named == self.service

    def target(self, declared: Iterable[str]) -> str:
        """The declared name this override sets; ConfigurationError if none or two."""
        declared = sorted(declared)
        found = [d for d in declared if (env_name(d) if self.by_env_name else d) == self.name]
        if len(found) == 1:
            return found[0]
        what = "methods" if self.kind == "method" else "listeners"
        if not found:
            raise ConfigurationError(
                f"{self.source} names {self.kind} {self.name!r} of {self.service}, which it "
                f"does not declare ({what}: {', '.join(declared) or 'none'})"
            )
        raise ConfigurationError(
            f"{self.source} could mean any of the {what} {', '.join(found)}: "
            "set them in a config file, where names are written as declared"
        )

    def describe(self, service: str, name: str) -> str:
        what = f"{service}.{name}" if self.kind == "method" else f"{service} listener of {name}"
        over = ", ".join(str(c) for c in self.channels)
        return f"{what} over {over} (set by {self.source})"


@dataclass(frozen=True)
class Config:
    """What a file and the environment say. `Config.load()` reads them; an empty Config
    changes nothing."""

    registry: str | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    sources: tuple[str, ...] = ()

    @classmethod
    def load(
        cls, path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """The file at `path` (else $JESUS_CONFIG, else none), then the environment's
        settings over it."""
        environ = os.environ if environ is None else environ
        path = path if path is not None else environ.get(ENV_FILE) or None
        base = cls() if path is None else cls.from_file(path)
        return base.merged(cls.from_env(environ))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Config:
        where = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"config file {where} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(f"config file {where}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"config file {where} is not valid TOML: {exc}") from None
        return cls.from_mapping(raw, where)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], where: str = "config") -> Config:
        unknown = sorted(set(raw) - _TOP_LEVEL)
        if unknown:
            raise ConfigurationError(
                f"{where}: unknown setting(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(_TOP_LEVEL))})"
            )
        registry = raw.get("registry")
        if registry is not None and (not isinstance(registry, str) or not registry):
            raise ConfigurationError(f"{where}: registry must be a URL, e.g. 'embedded://'")
        limits = _table(raw, "limits", where)
        checked = {name: _limit(name, value, f"{where} [limits]") for name, value in limits.items()}
        overrides = []
        for table, kind in _KINDS.items():
            for service, names in _table(raw, table, where).items():
                source = f"{where} [{table}.{service}]"
                if not isinstance(names, dict):
                    raise ConfigurationError(f"{source} must be a table of name = channel")
                for name, value in names.items():
                    channels = _channels(value, f"{source} {name}")
                    overrides.append(Override(kind, service, name, channels, source))
        return cls(registry, checked, tuple(overrides), (where,))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        overrides = []
        limits = {}
        for key, value in sorted(environ.items()):
            if key.startswith(ENV_LIMIT):
                name = key[len(ENV_LIMIT) :].lower()
                limits[name] = _limit(name, _number(value, key), key)
                continue
            for prefix, kind in ((ENV_CHANNEL, "method"), (ENV_LISTENER, "listener")):
                if key.startswith(prefix):
                    service, sep, name = key[len(prefix) :].partition("__")
                    if not sep or not service or not name:
                        raise ConfigurationError(
                            f"{key} must be {prefix}SERVICE__{kind.upper()}, "
                            f"e.g. {prefix}CALC__{'ADD' if kind == 'method' else 'USER_ALL'}"
                        )
                    channels = _channels(value.split(","), key)
                    overrides.append(Override(kind, service, name, channels, key, True))
        return cls(None, limits, tuple(overrides), ("environment",) if overrides or limits else ())

    def merged(self, over: Config) -> Config:
        """This configuration with `over`'s settings on top."""
        return Config(
            over.registry or self.registry,
            {**self.limits, **over.limits},
            self.overrides + over.overrides,
            self.sources + over.sources,
        )

    def registry_for(self, explicit: str | None) -> str | None:
        """The registry to use: the one given, else $JESUS_REGISTRY, else this one's."""
        return explicit or os.environ.get(ENV_REGISTRY) or self.registry

    def limits_over(self, base: Limits | None = None) -> Limits:
        return dataclasses.replace(base or Limits(), **self.limits)

    def apply(self, services: Sequence[Service]) -> list[str]:
        """Set the configured channels on the services' declarations, as if declared so
        (the services are changed); returns a line for each setting applied. Settings for
        services not among these are for other processes and left be."""
        applied = []
        for override in self.overrides:
            for service in services:
                if not override.of(service):
                    continue
                if override.kind == "method":
                    name = override.target(service.methods)
                    spec = service.methods[name]
                    service.methods[name] = dataclasses.replace(spec, channels=override.channels)
                else:
                    name = override.target(service.listeners)
                    sub = service.listeners[name]
                    service.listeners[name] = dataclasses.replace(sub, channels=override.channels)
                applied.append(override.describe(service.name, name))
        return applied

    def drift(self, records: Sequence[InstanceRecord]) -> list[str]:
        """Where running instances serve otherwise than this configuration says (they
        started before it changed, or without it): one line each, for `jesus check`."""
        found = []
        for record in records:
            latest: dict[tuple[str, str], Override] = {}  # a later setting replaces one before
            for override in self.overrides:
                named = env_name(record.service) if override.by_env_name else record.service
                if named != override.service:
                    continue
                declared = record.methods if override.kind == "method" else record.listens
                try:
                    latest[override.kind, override.target(declared)] = override
                except ConfigurationError as exc:
                    found.append(f"{record.service} [{record.instance_id}]: {exc}")
            for (kind, name), override in latest.items():
                running = _record_channels(record, kind, name)
                if running != [str(c) for c in override.channels]:
                    found.append(
                        f"{override.describe(record.service, name)}, but instance "
                        f"{record.instance_id} serves it over {', '.join(running)}"
                    )
        return found


def _record_channels(record: InstanceRecord, kind: str, name: str) -> list[str]:
    if kind == "method":
        return list(record.methods[name].channels)
    spec = record.listens[name]
    return [str(c) for c in spec.get("channels") or [spec.get("channel")]]


def _table(raw: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigurationError(f"{where}: [{name}] must be a table")
    return value


def _channels(value: Any, where: str) -> tuple[ChannelSpec, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where}: a channel or a list of them, got {value!r}")
    try:
        return parse_channels([v.strip() for v in value], "")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None


def _number(text: str, where: str) -> int | float:
    try:
        return int(text.replace("_", ""))
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{where}={text!r} is not a number") from None


def _limit(name: str, value: Any, where: str) -> Any:
    kind = _LIMITS.get(name)
    if kind is None:
        raise ConfigurationError(
            f"{where}: no limit named {name!r} (limits: {', '.join(sorted(_LIMITS))})"
        )
    numeric = type(value) in (int, float)
    if not numeric or value < 0 or (kind == "int" and type(value) is not int):
        need = "a whole number" if kind == "int" else "a number"
        raise ConfigurationError(f"{where}: {name} must be {need} of at least 0, got {value!r}")
    return float(value) if kind == "float" else value
