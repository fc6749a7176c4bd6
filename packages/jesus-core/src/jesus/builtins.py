"""The core's own contributions, registered through the same hooks a third party uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jesus.codecs.json import JsonCodec
from jesus.codecs.msgpack import MsgpackCodec
from jesus.compression.gzip import GzipCompression
from jesus.compression.identity import NoCompression
from jesus.compression.zstd import ZstdCompression
from jesus.hookspecs import hookimpl
from jesus.registry.embedded import EmbeddedRegistry
from jesus.validation import reference, rust


@hookimpl
def jesus_register_codecs(register: Callable[[Any], None]) -> None:
    register(MsgpackCodec())
    register(JsonCodec())


@hookimpl
def jesus_register_compressions(register: Callable[[Any], None]) -> None:
    register(NoCompression())
    register(GzipCompression())
    register(ZstdCompression())


@hookimpl
def jesus_register_validators(register: Callable[[Any], None]) -> None:
    register(reference.BACKEND)
    if rust.BACKEND is not None:
        register(rust.BACKEND)


@hookimpl
def jesus_register_registries(register: Callable[[str, Any], None]) -> None:
    register("embedded", EmbeddedRegistry)
