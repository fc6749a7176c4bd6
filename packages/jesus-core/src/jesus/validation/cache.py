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
        # Fast path for the same schema object seen again (the common case): no hashing of
        # its JSON. Holding the schema keeps its id from being reused.
        self._by_id: dict[int, tuple[Any, SchemaValidator | None]] = {}

    def get(self, schema: Any) -> SchemaValidator | None:
        """The validator for `schema`, or None when the schema accepts everything."""
        seen = self._by_id.get(id(schema))
        if seen is not None and seen[0] is schema:
            return seen[1]
        validator = self._lookup(schema)
        if len(self._by_id) > 4096:  # registry refreshes bring new objects: forget old ones
            self._by_id.clear()
        self._by_id[id(schema)] = (schema, validator)
        return validator

    def _lookup(self, schema: Any) -> SchemaValidator | None:
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
