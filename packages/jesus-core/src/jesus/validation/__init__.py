"""JSON Schema checking. Backends are plugins; the fastest installed one checks messages,
python-jsonschema stays the reference that checks the schemas themselves."""

from jesus.validation.base import SchemaValidator, ValidatorBackend, check_schema

__all__ = ["SchemaValidator", "ValidatorBackend", "check_schema"]
