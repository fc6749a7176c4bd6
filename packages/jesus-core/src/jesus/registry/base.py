from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from jesus.messages import ResponseMode


@dataclass(frozen=True)
class MethodRecord:
    request: Any
    response: Any
    mode: ResponseMode
    channel: str
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request,
            "response": self.response,
            "mode": str(self.mode),
            "channel": self.channel,
            "description": self.description,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> MethodRecord:
        return cls(
            request=raw.get("request", True),
            response=raw.get("response", True),
            mode=ResponseMode(raw.get("mode", "response")),
            channel=str(raw["channel"]),
            description=str(raw.get("description", "")),
        )


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

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["methods"] = {name: m.to_json() for name, m in self.methods.items()}
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> InstanceRecord:
        return cls(
            service=str(raw["service"]),
            version=str(raw.get("version", "0")),
            instance_id=str(raw["instance_id"]),
            endpoints={str(k): str(v) for k, v in raw.get("endpoints", {}).items()},
            methods={k: MethodRecord.from_json(v) for k, v in raw.get("methods", {}).items()},
            listens=dict(raw.get("listens", {})),
            emits=dict(raw.get("emits", {})),
            uses=dict(raw.get("uses", {})),
            host=str(raw.get("host", "")),
            pid=int(raw.get("pid", 0)),
            started_at=float(raw.get("started_at", 0.0)),
            expires_at=float(raw.get("expires_at", 0.0)),
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
