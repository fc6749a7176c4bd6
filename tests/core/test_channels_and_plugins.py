from __future__ import annotations

import importlib.metadata
import inspect
import logging
from pathlib import Path
from typing import Any

import pytest

import jesus
from jesus import hookspecs
from jesus.channel import ChannelSpec, resolve_channel
from jesus.errors import ChannelNotInstalled, ConfigurationError
from jesus.plugins import build_catalog, default_catalog, get_plugin_manager

ROOT = Path(__file__).resolve().parents[2]


def test_channel_spec_defaults_and_parsing() -> None:
    assert ChannelSpec.parse("tcp") == ChannelSpec("tcp", "msgpack", "none")
    assert str(ChannelSpec.parse("HTTP+json+gzip")) == "http+json+gzip"
    for bad in ("", "tcp++gzip", "a+b+c+d"):
        with pytest.raises(ConfigurationError):
            ChannelSpec.parse(bad)


def test_channel_resolves_to_its_three_plugins() -> None:
    channel = resolve_channel("tcp+msgpack+zstd", default_catalog())
    assert (channel.transport.scheme, channel.codec.name, channel.compression.name) == (
        "tcp",
        "msgpack",
        "zstd",
    )


@pytest.mark.parametrize(
    ("spec", "extra"),
    [
        ("http+json+gzip", "http"),
        ("https+msgpack", "http"),
        ("udp+msgpack", "udp"),
        ("zmq+msgpack", "zmq"),
        ("unix", "tcp"),
    ],
)
def test_missing_channel_names_the_extra(
    spec: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JESUS_LOAD_PLUGINS", "")  # as if only jesus-core were installed
    pm, failures = get_plugin_manager()
    with pytest.raises(ChannelNotInstalled, match=rf'pip install "jesus-core\[{extra}\]"'):
        resolve_channel(spec, build_catalog(pm, failures))


def test_missing_channel_fails_when_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JESUS_LOAD_PLUGINS", "tcp")
    pm, failures = get_plugin_manager()
    catalog = build_catalog(pm, failures)
    svc = jesus.Service("needs-http", channel="http+json")

    @svc.method()
    async def m(data: Any) -> Any:
        return data

    async def start() -> None:
        async with jesus.serve(svc, catalog=catalog):
            pass

    import anyio

    with pytest.raises(ChannelNotInstalled, match="jesus-core\\[http\\]"):
        anyio.run(start)


def test_unknown_codec_is_reported() -> None:
    with pytest.raises(ChannelNotInstalled, match="no codec named 'yaml'"):
        resolve_channel("tcp+yaml", default_catalog())


def test_core_contributions_register_through_the_hooks() -> None:
    catalog = default_catalog()
    assert catalog.contributions["jesus.builtins"][:5] == [
        "codec:msgpack",
        "codec:json",
        "compression:none",
        "compression:gzip",
        "compression:zstd",
    ]
    assert "transport:tcp" in catalog.contributions["tcp"]
    assert "transport:unix" in catalog.contributions["tcp"]


class _BrokenEntryPoint:
    name = "broken"
    value = "does.not:exist"

    def load(self) -> Any:
        raise ImportError("No module named 'does'")


def test_a_plugin_that_fails_to_load_is_reported_and_the_others_load(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = importlib.metadata.entry_points

    def entry_points(**kw: Any) -> Any:
        return [_BrokenEntryPoint(), *real(**kw)]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    with caplog.at_level(logging.ERROR):
        pm, failures = get_plugin_manager()
    catalog = build_catalog(pm, failures)
    assert [f.name for f in catalog.failures] == ["broken"]
    assert "No module named" in catalog.failures[0].error
    assert "tcp" in catalog.transports
    assert "broken" in caplog.text


def test_load_plugins_switch_restricts_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JESUS_LOAD_PLUGINS", "")
    pm, failures = get_plugin_manager()
    catalog = build_catalog(pm, failures)
    assert "tcp" not in catalog.transports and "msgpack" in catalog.codecs


HOOKS = [
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if name.startswith("jesus_")
]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test_and_a_documented_heading(hook: str) -> None:
    this = Path(__file__).resolve()
    others = [p for p in (ROOT / "tests").rglob("test_*.py") if p.resolve() != this]
    assert any(hook in p.read_text() for p in others), f"no test exercises {hook}"
    assert f"### `{hook}`" in (ROOT / "docs" / "plugins.md").read_text(), hook
    doc = getattr(hookspecs, hook).__doc__ or ""
    assert "Called" in doc and "register" in doc, f"{hook} docstring must say when and what"
