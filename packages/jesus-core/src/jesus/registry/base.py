from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from jesus.messages import ResponseMode
from jesus.routing.retries import DEFAULT_RETRY, Retry
from jesus.sealing.envelope import strength


@dataclass(frozen=True)
class MethodRecord:
    request: Any
    response: Any
    mode: ResponseMode
    channel: str  # the one callers prefer: the first of `channels`
    description: str = ""
    # Every channel it is served on, in order of preference; () means just `channel`.
    channels: tuple[str, ...] = ()
    seal: str | None = None  # "sign" or "encrypt": requests must be sealed so
    # The provider's rules for its callers (jesus.routing.retries): may a call be replayed
    # after it may have run, how many attempts, and the deadline when the caller sets none.
    idempotent: bool = False
    retry: Retry = DEFAULT_RETRY
    timeout: float | None = None

    def __post_init__(self) -> None:
        if not self.channels:
            object.__setattr__(self, "channels", (self.channel,))

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "response": self.response,
            "mode": str(self.mode),
            "channel": self.channel,
            "channels": list(self.channels),
            "description": self.description,
            **({"seal": self.seal} if self.seal else {}),
            **({"idempotent": True} if self.idempotent else {}),
            **({"retry": self.retry.to_json()} if self.retry != DEFAULT_RETRY else {}),
            **({"timeout": self.timeout} if self.timeout is not None else {}),
        }

    @classmethod
    def from_json(cls, raw: Any) -> MethodRecord:
        """Raises ValueError naming what is missing or mistyped."""
        _check(raw, _METHOD_FIELDS, "method")
        timeout = raw.get("timeout")
        if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
            raise ValueError(f"field 'timeout' must be between 0 and {MAX_TIMEOUT} seconds")
        return cls(
            request=raw.get("request", True),
            response=raw.get("response", True),
            mode=ResponseMode(raw.get("mode", "response")),
            channel=raw["channel"],
            description=raw.get("description", ""),
            channels=channels_of(raw),
            seal=seal_of(raw),
            idempotent=raw.get("idempotent", False),
            retry=Retry.from_json(raw["retry"]) if "retry" in raw else DEFAULT_RETRY,
            timeout=None if timeout is None else float(timeout),
        )


# The longest default deadline a provider may publish (a day): its callers would wait so long.
MAX_TIMEOUT = 86400.0


def seal_of(raw: dict[str, Any]) -> str | None:
    """A method's or listener's `seal`: None, "sign" or "encrypt"; ValueError otherwise."""
    seal = raw.get("seal")
    try:
        strength(seal)
    except ValueError as exc:
        raise ValueError(f"field 'seal': {exc}") from None
    return seal


def channels_of(raw: dict[str, Any]) -> tuple[str, ...]:
    """The channels a method or listener record names: `channels`, or (records of peers
    that predate it) just `channel`. Raises ValueError when they are mistyped."""
    channels = raw.get("channels")
    if channels is None:
        return (str(raw.get("channel")),)
    if (
        not isinstance(channels, list)
        or not channels
        or not all(isinstance(c, str) for c in channels)
    ):
        raise ValueError(f"field 'channels' must be a non-empty list of strings, got {channels!r}")
    return tuple(channels)


# The record fields (PROTOCOL.md, "Registry records"): name -> (JSON type, required).
_INSTANCE_FIELDS = {
    "service": ("string", True),
    "instance_id": ("string", True),
    "endpoints": ("object", True),
    "expires_at": ("number", True),
    "version": ("string", False),
    "methods": ("object", False),
    "listens": ("object", False),
    "emits": ("object", False),
    "uses": ("object", False),
    "host": ("string", False),
    "pid": ("integer", False),
    "started_at": ("number", False),
    "seal": ("object", False),
}
_METHOD_FIELDS = {
    "channel": ("string", True),
    "mode": ("string", False),
    "description": ("string", False),
    "idempotent": ("boolean", False),
    "retry": ("object", False),
    "timeout": ("number", False),
}
_IS = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    # bool is an int in Python, never a number in JSON; NaN would never expire.
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float) and math.isfinite(v),
}


def _check(raw: Any, fields: dict[str, tuple[str, bool]], what: str) -> None:
    if not isinstance(raw, dict):
        raise ValueError(f"the {what} is not a JSON object")
    for name, (kind, required) in fields.items():
        if name not in raw:
            if required:
                raise ValueError(f"required field {name!r} is missing")
        elif not _IS[kind](raw[name]):
            raise ValueError(f"field {name!r} must be a JSON {kind}, got {raw[name]!r}")


@dataclass(frozen=True)
class InstanceRecord:
    """One live instance of a service, as every peer sees it in the registry."""

    service: str
    version: str
    instance_id: str
    endpoints: dict[str, str]  # transport scheme -> endpoint URL
    methods: dict[str, MethodRecord] = field(default_factory=dict)
    listens: dict[str, Any] = field(default_factory=dict)  # event -> {schema, channel, group}
    emits: dict[str, Any] = field(default_factory=dict)  # event -> {schema, mode}
    uses: dict[str, Any] = field(default_factory=dict)  # "service.method" -> {request, response}
    host: str = ""
    pid: int = 0
    started_at: float = 0.0
    expires_at: float = 0.0
    # The instance's sealing keys, signed by its certificate (jesus.sealing.keys).
    seal: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["methods"] = {name: m.to_json() for name, m in self.methods.items()}
        if not self.seal:
            del raw["seal"]  # absent: nothing here is sealed
        return raw

    @classmethod
    def from_json(cls, raw: Any) -> InstanceRecord:
        """Raises ValueError naming the first field that is missing or mistyped."""
        _check(raw, _INSTANCE_FIELDS, "record")
        if not all(isinstance(url, str) for url in raw["endpoints"].values()):
            raise ValueError("field 'endpoints' must map each transport to a URL string")
        methods = {}
        for name, method in raw.get("methods", {}).items():
            try:
                methods[name] = MethodRecord.from_json(method)
            except ValueError as exc:
                raise ValueError(f"method {name!r}: {exc}") from None
        return cls(
            service=raw["service"],
            version=raw.get("version", "0"),
            instance_id=raw["instance_id"],
            endpoints=dict(raw["endpoints"]),
            methods=methods,
            listens=dict(raw.get("listens", {})),
            emits=dict(raw.get("emits", {})),
            uses=dict(raw.get("uses", {})),
            host=raw.get("host", ""),
            pid=raw.get("pid", 0),
            started_at=float(raw.get("started_at", 0.0)),
            expires_at=float(raw["expires_at"]),
            seal=dict(raw.get("seal", {})),
        )


class RegistryBackend(Protocol):
    """Storage of instance records. Every method may raise `jesus.errors.RegistryError`.

    `register` is also the heartbeat: calling it again renews the record for `ttl` seconds.
    A record not renewed within its TTL must stop being listed.
    """

    url: str

    async def register(self, record: InstanceRecord, ttl: float) -> None: ...

    async def deregister(self, service: str, instance_id: str) -> None: ...

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]: ...

    async def aclose(self) -> None: ...


class IndexedBackend(RegistryBackend, Protocol):
    """A backend that keeps indexes, so that emitters and starting services read a few keys
    instead of the whole registry (jesus.registry.lookups). Both are optional."""

    async def find_services(self, keys: Iterable[tuple[str, str]]) -> set[str]:
        """The services indexed under any of `keys`, each (kind, key): ("listens", pattern),
        ("emits", pattern) or ("uses", service). May name a service that no longer declares
        the key; never leaves out one that does."""
        ...

    async def instances_of(self, services: Sequence[str]) -> list[InstanceRecord]:
        """The live instances of each of `services`, in one listing."""
        ...
