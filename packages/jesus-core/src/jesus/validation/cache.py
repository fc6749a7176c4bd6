"""Compiled validators, built once per distinct schema and reused for every message."""

from __future__ import annotations

import json
from typing import Any

from jesus.errors import SchemaError
from jesus.validation.base import SchemaValidator, ValidatorBackend, check_schema


class ValidatorCache:
    def __init__(self, backends: list[ValidatorBackend]) -> None:
        if not backends:
            raise SchemaError("no JSON Schema validator backend is registered")
        self.backends = sorted(backends, key=lambda b: -b.priority)
        self._compiled: dict[str, SchemaValidator | None] = {}

    def get(self, schema: Any) -> SchemaValidator | None:
        """The validator for `schema`, or None when the schema accepts everything."""
        if schema is True or schema == {}:
            return None
        key = json.dumps(schema, sort_keys=True)
        try:
            return self._compiled[key]
        except KeyError:
            pass
        check_schema(schema)
        validator = None
        for backend in self.backends:
            if backend.supports is not None and not backend.supports(schema):
                continue
            validator = backend.compile(schema)
            break
        self._compiled[key] = validator
        return validator

    @property
    def backend_name(self) -> str:
        return self.backends[0].name
