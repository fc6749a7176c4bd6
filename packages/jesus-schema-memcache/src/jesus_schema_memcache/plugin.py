"""Entry point of the `jesus` group: contributes the `memcache://` registry backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jesus import hookimpl
from jesus_schema_memcache.backend import MemcacheRegistry


@hookimpl
def jesus_register_registries(register: Callable[[str, Any], None]) -> None:
    register("memcache", MemcacheRegistry)
