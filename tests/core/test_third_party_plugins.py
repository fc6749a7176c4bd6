"""Each hook, used the way a third-party plugin would."""

from __future__ import annotations

from typing import Any

import pytest

import jesus
from jesus.channel import resolve_channel
from jesus.plugins import build_catalog, get_plugin_manager
from jesus.registry.embedded import EmbeddedRegistry
from jesus.registry.open import open_registry
from jesus.validation.base import ValidatorBackend
from jesus.validation.cache import ValidatorCache
from jesus.validation.reference import ReferenceValidator


def catalog_with(plugin: Any, name: str = "third-party") -> Any:
    pm, failures = get_plugin_manager(load_entry_points=False)
    pm.register(plugin, name=name)
    return build_catalog(pm, failures)


def test_a_plugin_whose_hook_raises_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Bad:
        @jesus.hookimpl
        def jesus_register_codecs(self, register: Any) -> None:
            raise RuntimeError("cannot")

    pm, failures = get_plugin_manager(load_entry_points=False)
    pm.register(Bad(), name="bad")
    catalog = build_catalog(pm, failures)
    assert catalog.failures[0].name == "bad" and "cannot" in catalog.failures[0].error
    assert "msgpack" in catalog.codecs


def test_a_third_party_codec_registers_and_works() -> None:
    class Upper:
        name = "upper"
        content_type = "text/plain"

        def encode(self, value: Any) -> bytes:
            return str(value).upper().encode()

        def decode(self, data: bytes) -> Any:
            return data.decode()

    class Plugin:
        @jesus.hookimpl
        def jesus_register_codecs(self, register: Any) -> None:
            register(Upper())

    pm, failures = get_plugin_manager(load_entry_points=False)
    pm.register(Plugin(), name="upper-plugin")
    catalog = build_catalog(pm, failures)
    assert catalog.contributions["upper-plugin"] == ["codec:upper"]
    assert catalog.codecs["upper"].encode("a") == b"A"


def test_a_third_party_compression_registers() -> None:
    class Reverse:
        name = "reverse"
        content_encoding = None

        def compress(self, data: bytes) -> bytes:
            return data[::-1]

        def decompress(self, data: bytes, max_size: int) -> bytes:
            return data[::-1]

    class Plugin:
        @jesus.hookimpl
        def jesus_register_compressions(self, register: Any) -> None:
            register(Reverse())

    catalog = catalog_with(Plugin())
    assert catalog.compressions["reverse"].compress(b"ab") == b"ba"


def test_a_third_party_transport_makes_its_channel_resolvable() -> None:
    class Carrier:
        scheme = "pigeon"
        modes = frozenset(jesus.ResponseMode)

    class Plugin:
        @jesus.hookimpl
        def jesus_register_transports(self, register: Any) -> None:
            register(Carrier())

    catalog = catalog_with(Plugin())
    assert resolve_channel("pigeon+json", catalog).transport.scheme == "pigeon"
    assert catalog.contributions["third-party"] == ["transport:pigeon"]


def test_a_higher_priority_validator_backend_wins() -> None:
    class Plugin:
        @jesus.hookimpl
        def jesus_register_validators(self, register: Any) -> None:
            register(ValidatorBackend("mine", 1000, ReferenceValidator))

    catalog = catalog_with(Plugin())
    assert ValidatorCache(catalog.validators).backend_name == "mine"


def test_a_third_party_registry_backend_opens_by_url_scheme(tmp_path: Any) -> None:
    class Plugin:
        @jesus.hookimpl
        def jesus_register_registries(self, register: Any) -> None:
            register("files", lambda url: EmbeddedRegistry("embedded://" + str(tmp_path)))

    backend = open_registry("files://anything", catalog_with(Plugin()))
    assert isinstance(backend, EmbeddedRegistry)
    with pytest.raises(jesus.ChannelNotInstalled, match="memcache"):
        open_registry("memcache://127.0.0.1:1", catalog_with(Plugin()))


def test_middleware_registers_in_order() -> None:
    class A(jesus.Middleware):
        name = "a"

    class B(jesus.Middleware):
        name = "b"

    class Plugin:
        @jesus.hookimpl
        def jesus_register_middleware(self, register: Any) -> None:
            register(A())
            register(B())

    catalog = catalog_with(Plugin())
    assert [m.name for m in catalog.middleware] == ["a", "b"]
