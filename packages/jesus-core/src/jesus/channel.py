"""Channel specs: `transport+codec+compression`, e.g. `tcp+msgpack+zstd` or `http+json+gzip`.

The codec defaults to msgpack and the compression to none, so `tcp` means `tcp+msgpack+none`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jesus.errors import ChannelNotInstalled, ConfigurationError

# Which pip extra brings each first-party plugin, to name it when one is missing.
EXTRA_FOR = {
    "tcp": "tcp",
    "unix": "tcp",
    "http": "http",
    "https": "http",
    "udp": "udp",
    "zmq": "zmq",
    "memcache": "memcache",
}


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    transport: str
    codec: str = "msgpack"
    compression: str = "none"

    @classmethod
    def parse(cls, spec: str) -> ChannelSpec:
        parts = [p.strip().lower() for p in spec.split("+")]
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ConfigurationError(
                f"channel {spec!r} is not of the form transport[+codec[+compression]]"
            )
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.transport}+{self.codec}+{self.compression}"


@dataclass(frozen=True, slots=True)
class Channel:
    spec: ChannelSpec
    transport: Any
    codec: Any
    compression: Any
    name: str = ""  # the full spec as text, computed once: it travels with every call


def parse_channels(value: str | Sequence[str] | None, default: str) -> tuple[ChannelSpec, ...]:
    """A declaration's channels, in the order callers should prefer them: one spec, or a
    list (e.g. `["tcp", "http+json"]`: tcp for services, http for curl)."""
    given = [default] if value is None else [value] if isinstance(value, str) else list(value)
    if not given:
        raise ConfigurationError("a declaration needs at least one channel")
    specs = tuple(ChannelSpec.parse(v) for v in given)
    if len(set(specs)) != len(specs):
        raise ConfigurationError(f"channels {given!r} name one channel twice")
    return specs


def missing(kind: str, name: str, available: Any) -> ChannelNotInstalled:
    extra = EXTRA_FOR.get(name)
    hint = (
        f'; install it with: pip install "jesus-core[{extra}]"'
        if extra
        else "; is the plugin that provides it installed?"
    )
    known = ", ".join(sorted(available)) or "none"
    return ChannelNotInstalled(f"no {kind} named {name!r} is installed (have: {known}){hint}")


def resolve_channel(spec: str | ChannelSpec, catalog: Any) -> Channel:
    """Find the three plugins of a channel; raise ChannelNotInstalled naming what to install."""
    parsed = spec if isinstance(spec, ChannelSpec) else ChannelSpec.parse(spec)
    transport = catalog.transports.get(parsed.transport)
    if transport is None:
        raise missing("transport", parsed.transport, catalog.transports)
    codec = catalog.codecs.get(parsed.codec)
    if codec is None:
        raise missing("codec", parsed.codec, catalog.codecs)
    compression = catalog.compressions.get(parsed.compression)
    if compression is None:
        raise missing("compression", parsed.compression, catalog.compressions)
    return Channel(parsed, transport, codec, compression, str(parsed))
