"""jsonschema-rs: compiled validation, about 100x faster than the reference, and safe on
hostile input: its regexes (the `pattern` keywords) run in linear time. A dependency of
jesus-core, so every install validates messages with it."""

from __future__ import annotations

from typing import Any

from jesus.validation.base import ValidatorBackend, format_path

jsonschema_rs: Any
try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - depends on the extras installed
    jsonschema_rs = None


class RustValidator:
    def __init__(self, schema: dict[str, Any] | bool) -> None:
        self._validator = jsonschema_rs.validator_for(schema)

    def is_valid(self, instance: Any) -> bool:
        try:
            return bool(self._validator.is_valid(instance))
        except ValueError:
            # Values JSON cannot hold (bytes, sets, NaN keys) are not valid instances.
            return False

    def errors(self, instance: Any) -> list[str]:
        try:
            return [
                f"{format_path(e.instance_path)}: {e.message}"
                for e in self._validator.iter_errors(instance)
            ]
        except ValueError as exc:
            return [f"(root): not a JSON value: {exc}"]


BACKEND = (
    ValidatorBackend(name="jsonschema-rs", priority=100, compile=RustValidator)
    if jsonschema_rs is not None
    else None
)
