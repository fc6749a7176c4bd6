from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
import jsonschema.validators

from jesus.errors import CallError, SchemaError


class SchemaValidator(Protocol):
    """One compiled schema. `is_valid` is the hot path; `errors` explains a failure."""

    def is_valid(self, instance: Any) -> bool: ...

    def errors(self, instance: Any) -> list[str]: ...


@dataclass(frozen=True)
class ValidatorBackend:
    """A validator implementation contributed by a plugin.

    `priority` orders backends (highest is used for messages); `supports(schema)` says whether
    this backend handles the schema's draft; `compile(schema)` builds a `SchemaValidator` once.
    """

    name: str
    priority: int
    compile: Any  # Callable[[dict[str, Any]], SchemaValidator]
    supports: Any = None  # Callable[[dict[str, Any]], bool] | None


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless `schema` is a valid JSON Schema (any draft jsonschema knows)."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise SchemaError(f"a schema must be an object or a boolean, not {type(schema).__name__}")
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise SchemaError(f"invalid JSON Schema: {exc.message}") from exc


def format_path(path: Any) -> str:
    parts = [str(p) for p in path]
    return "/" + "/".join(parts) if parts else "(root)"


MAX_DETAILS = 20


def schema_error(
    error: type[CallError], message: str, check: SchemaValidator, instance: Any, corrid: str | None
) -> CallError:
    """The typed error for an instance `check` refused, listing why (at most MAX_DETAILS)."""
    return error(message, corrid=corrid, details=check.errors(instance)[:MAX_DETAILS])
