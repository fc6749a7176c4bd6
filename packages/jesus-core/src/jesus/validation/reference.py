"""python-jsonschema: the reference implementation, for what jsonschema-rs cannot compile.
Its regexes backtrack: a `pattern` such as `^(a+)+$` takes exponential time on a hostile
string, which is why messages are not validated with it when jsonschema-rs is there."""

from __future__ import annotations

from typing import Any

import jsonschema
import jsonschema.validators

from jesus.validation.base import ValidatorBackend, format_path


class ReferenceValidator:
    def __init__(self, schema: dict[str, Any] | bool) -> None:
        default = jsonschema.Draft202012Validator
        cls = (
            default
            if isinstance(schema, bool)
            else jsonschema.validators.validator_for(schema, default=default)
        )
        self._validator = cls(schema, format_checker=None)

    def is_valid(self, instance: Any) -> bool:
        return bool(self._validator.is_valid(instance))

    def errors(self, instance: Any) -> list[str]:
        return [
            f"{format_path(e.absolute_path)}: {e.message}"
            for e in sorted(self._validator.iter_errors(instance), key=lambda e: list(e.path))
        ]


BACKEND = ValidatorBackend(name="jsonschema", priority=0, compile=ReferenceValidator)
