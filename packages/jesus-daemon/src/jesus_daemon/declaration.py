"""What a local process offers, as its HELLO's `provide` says (PROTOCOL.md, "Node daemon"):
checked against DECLARATION, then made into Services whose handlers the daemon supplies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema

from jesus import event_names
from jesus.errors import ConfigurationError, InvalidRequest
from jesus.messages import ResponseMode
from jesus.runtime.service import Service

_CHANNELS = {
    "oneOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ]
}
_ALLOW = {"type": "array", "items": {"type": "string"}}
_SEAL = {"enum": ["sign", "encrypt"]}
_METHOD = {
    "type": "object",
    "properties": {
        "request": {},
        "response": {},
        "mode": {"enum": [m.value for m in ResponseMode]},
        "channel": _CHANNELS,
        "description": {"type": "string"},
        "allow": _ALLOW,
        "seal": _SEAL,
        # What callers follow and the daemon enforces (docs/resilience.md).
        "idempotent": {"type": "boolean"},
        "retry": {"type": "integer", "minimum": 1},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        "concurrency": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": False,
}
_LISTENER = {
    "type": "object",
    "properties": {
        "schema": {},
        "channel": _CHANNELS,
        "group": {"type": "string", "minLength": 1},
        "allow": _ALLOW,
        "seal": _SEAL,
    },
    "additionalProperties": False,
}
_SERVICE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "string"},
        "channel": {"type": "string"},
        "description": {"type": "string"},
        "methods": {"type": "object", "additionalProperties": _METHOD},
        "listens": {"type": "object", "additionalProperties": _LISTENER},
        "emits": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"schema": {}, "mode": {"enum": ["noResponse", "ack"]}},
                "additionalProperties": False,
            },
        },
        "uses": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"request": {}, "response": {}},
                "additionalProperties": False,
            },
        },
    },
    "required": ["name"],
    "additionalProperties": False,
}
# One service, or several, offered over one connection.
DECLARATION = {"oneOf": [_SERVICE, {"type": "array", "items": _SERVICE, "minItems": 1}]}
_CHECK = jsonschema.Draft202012Validator(DECLARATION)

# (service.method, its mode) -> the handler that carries a call on to the process; a
# listener's mode is None: an event goes on in the mode it came in (ack or noResponse).
Forwarder = Callable[[str, ResponseMode | None], Callable[..., Any]]


def services_of(offer: Any, forwarder: Forwarder) -> list[Service]:
    """The Services `offer` declares, each handler made by `forwarder`. Raises
    InvalidRequest naming what is wrong, for the process to be told."""
    error = jsonschema.exceptions.best_match(_CHECK.iter_errors(offer))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise InvalidRequest(f"provide {where}: {error.message}")
    try:
        return [
            _service(each, forwarder) for each in (offer if isinstance(offer, list) else [offer])
        ]
    except ConfigurationError as exc:  # a bad name, schema or channel, told as Service says it
        raise InvalidRequest(f"provide: {exc}") from None


def _service(decl: dict[str, Any], forwarder: Forwarder) -> Service:
    name = decl["name"]
    service = Service(
        name,
        version=decl.get("version", "0.1.0"),
        channel=decl.get("channel", "tcp+msgpack"),
        description=decl.get("description", ""),
    )
    for method, spec in decl.get("methods", {}).items():
        mode = ResponseMode(spec.get("mode", ResponseMode.RESPONSE.value))
        service.method(
            method,
            request=spec.get("request", True),
            response=spec.get("response", True),
            mode=mode,
            channel=spec.get("channel"),
            description=spec.get("description", ""),
            allow=spec.get("allow"),
            seal=spec.get("seal"),
            relay=True,
            idempotent=spec.get("idempotent", False),
            retry=spec.get("retry"),
            timeout=spec.get("timeout"),
            concurrency=spec.get("concurrency"),
        )(forwarder(f"{name}.{method}", mode))
    for pattern, spec in decl.get("listens", {}).items():
        service.listener(
            pattern,
            schema=spec.get("schema", True),
            channel=spec.get("channel"),
            group=spec.get("group"),
            allow=spec.get("allow"),
            seal=spec.get("seal"),
            relay=True,
        )(forwarder(f"{name}.{event_names.listener_method(pattern)}", None))
    for event, spec in decl.get("emits", {}).items():
        service.emitter(event, schema=spec.get("schema", True), mode=spec.get("mode", "noResponse"))
    for target, spec in decl.get("uses", {}).items():
        service.use(target, request=spec.get("request", True), response=spec.get("response", True))
    return service


def declaration_of(service: Service) -> dict[str, Any]:
    """A Service as a provider declares it (what a Python process offers through the daemon)."""
    out: dict[str, Any] = {
        "name": service.name,
        "version": service.version,
        "channel": service.channel,
        "description": service.description,
        "methods": {
            name: {
                "request": spec.request,
                "response": spec.response,
                "mode": spec.mode.value,
                "channel": [str(c) for c in spec.channels],
                "description": spec.description,
                **({"allow": sorted(spec.allow)} if spec.allow is not None else {}),
                **({"seal": spec.seal} if spec.seal else {}),
                **({"idempotent": True} if spec.idempotent else {}),
                "retry": spec.retry.attempts,
                **({"timeout": spec.timeout} if spec.timeout is not None else {}),
                **({"concurrency": spec.concurrency} if spec.concurrency else {}),
            }
            for name, spec in service.methods.items()
        },
        "listens": {
            pattern: {
                "schema": spec.schema,
                "channel": [str(c) for c in spec.channels],
                "group": spec.group,
                **({"allow": sorted(spec.allow)} if spec.allow is not None else {}),
                **({"seal": spec.seal} if spec.seal else {}),
            }
            for pattern, spec in service.listeners.items()
        },
        "emits": {
            event: {"schema": spec.schema, "mode": spec.mode.value}
            for event, spec in service.emits.items()
        },
        "uses": dict(service.uses),
    }
    return out
