"""Checks the contract tests share: the AsyncAPI 3.0 schema, and that a document's
references all lead somewhere."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

# From the npm package @asyncapi/specs 6.11.1 (Apache-2.0), schemas/3.0.0-without-$id.json:
# no PyPI package ships it, and the tests run offline.
ASYNCAPI_SCHEMA = Path(__file__).with_name("asyncapi-3.0.0.schema.json")


@cache
def _asyncapi_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))


def asyncapi_errors(doc: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _asyncapi_validator().iter_errors(doc)]


def dangling_refs(doc: Any) -> list[str]:
    """Every local `$ref` in `doc` that points at nothing."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            ref = value.get("$ref")
            if isinstance(ref, str) and ref.startswith("#") and not _resolves(doc, ref):
                found.append(ref)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(doc)
    return found


def _resolves(doc: Any, ref: str) -> bool:
    node = doc
    for part in ref[1:].split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True
