"""A schema document as the rules see it: in 2020-12 spelling (drafts.py), with its local
`$ref`s resolved on demand, and a validator for any of its subschemas.

Only local references are followed: `#`, `#/$defs/...`, `#/definitions/...`, any JSON pointer
into the document, and `$anchor` names. Anything else (another document, `$dynamicRef`,
`$recursiveRef`) is `Unresolved`, which the rules report as undecidable rather than guess at.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jsonschema

from jesus.compat import drafts
from jesus.compat.drafts import Schema
from jesus.compat.merge import canon

jsonschema_rs: Any
try:
    import jsonschema_rs
except ImportError:  # pragma: no cover - depends on the extras installed
    jsonschema_rs = None


@dataclass(frozen=True)
class Unresolved:
    keyword: str
    target: str
    reason: str = "is not a local reference"


class Doc:
    """One side's schema: `raw` as declared, `root` rewritten into 2020-12 keywords."""

    def __init__(self, raw: Schema) -> None:
        self.raw = raw
        self.cls = drafts.validator_class(raw)
        self.root: Schema = drafts.to_2020(raw, self.cls)
        self.asserts_format = drafts.asserts_format(self.cls)
        self.key = canon(self.root)
        self._loops = False
        # Subschemas are validated by evolving this one: their `$ref`s resolve in `root`.
        self._validator = jsonschema.Draft202012Validator(self.root, format_checker=None)
        self._raw_validators = [self.cls(raw, format_checker=None).is_valid]
        if jsonschema_rs is not None:
            try:  # what validates jesus messages, where it compiles the schema
                self._raw_validators.append(jsonschema_rs.validator_for(raw).is_valid)
            except Exception:
                pass  # jesus falls back to the reference validator too

    def valid(self, node: Schema, instance: Any) -> bool | None:
        """Does `instance` validate under `node`, a subschema of this document? None: cannot
        tell (an unresolvable reference, a regex Python cannot compile)."""
        if self._loops:
            return None
        try:
            return bool(self._validator.evolve(schema=node).is_valid(instance))
        except RecursionError:
            self._loops = True  # a reference cycle: every later answer would be as slow
            return None
        except Exception:  # the validator's own failure: a bad pattern, a remote $ref
            return None

    def valid_raw(self, instance: Any) -> bool | None:
        """Does `instance` validate under the schema as declared, by its own draft's rules?
        Asked of python-jsonschema and of jsonschema-rs: None when they disagree (jsonschema-rs
        asserts `format` before 2019-09, and `dependencies` in every draft)."""
        if self._loops:
            return None
        try:
            answers = {bool(is_valid(instance)) for is_valid in self._raw_validators}
        except RecursionError:
            self._loops = True
            return None
        except Exception:
            return None
        return answers.pop() if len(answers) == 1 else None

    def resolve(self, node: Schema) -> Schema | Unresolved:
        """`node` without a `$ref` at its top: the target, with any sibling keywords joined in
        by `allOf` (2019-09 on; earlier drafts dropped the siblings in drafts.py)."""
        seen: set[str] = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or ref in seen:
                return Unresolved("$ref", str(ref), "is a cycle of references")
            seen.add(ref)
            target = self.lookup(ref)
            if isinstance(target, Unresolved):
                return target
            rest = {k: v for k, v in node.items() if k != "$ref" and k not in _NOT_ASSERTIONS}
            node = {"allOf": [target, rest]} if rest else target
        if isinstance(node, dict):
            for keyword in ("$dynamicRef", "$recursiveRef"):
                if keyword in node:
                    return Unresolved(keyword, str(node[keyword]))
        return node

    def lookup(self, ref: str) -> Schema | Unresolved:
        if not ref.startswith("#"):
            return Unresolved("$ref", ref)
        fragment = unquote(ref[1:])
        if fragment and not fragment.startswith("/"):
            return self._anchors().get(fragment, Unresolved("$ref", ref))
        node: Any = self.root
        for part in fragment.split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return Unresolved("$ref", ref)
        if not isinstance(node, dict | bool):
            return Unresolved("$ref", ref)
        return node

    def _anchors(self) -> dict[str, Schema]:
        found: dict[str, Schema] = {}
        for node in _walk(self.root):
            anchor = node.get("$anchor")
            if isinstance(anchor, str):
                found[anchor] = node
            ident = node.get("$id")
            if isinstance(ident, str) and ident.startswith("#"):
                found[ident[1:]] = node  # draft-07 spelling of an anchor
        return found


_NOT_ASSERTIONS = {"$schema", "$id", "$anchor", "$defs", "definitions", "$comment"}


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


@dataclass
class Context:
    """What one comparison carries down: both documents, and the pairs being compared, with
    the instance path where each was met. A pair met again deeper in the instance is a
    recursive schema, assumed to hold: any instance is finite, so the recursion ends in a case
    checked elsewhere. Paths only grow by descending into a property, an item or a name."""

    writer: Doc
    reader: Doc
    where: str
    active: dict[tuple[int, int], str] = field(default_factory=dict)  # pair -> instance path
    depth: int = 0
