"""Channels, limits and registry from a TOML file and the environment (jesus.config), and
serve(config=...) serving what they say over real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import jesus
from jesus.config import Config, env_name

FILE = """
registry = "embedded:///nowhere"

[limits]
max_message_size = 4096
handshake_timeout = 2

[channels.calc]
add = "udp+msgpack"
count = ["http+json", "tcp"]

[listeners.audit]
"user.*" = "udp+json"
"""


def calc() -> jesus.Service:
    svc = jesus.Service("calc", channel="tcp")

    @svc.method(request={"type": "object", "required": ["a", "b"]})
    async def add(data: Any) -> Any:
        return data["a"] + data["b"]

    @svc.method(mode="stream")
    async def count(data: Any) -> Any:
        for i in range(data["n"]):
            yield i

    return svc


def audit(seen: list[Any]) -> jesus.Service:
    svc = jesus.Service("audit", channel="tcp")

    @svc.listener("user.*", schema={"type": "object", "required": ["id"]})
    async def on_user(data: Any) -> None:
        seen.append(data)

    return svc


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "jesus.toml"
    path.write_text(text)
    return path


def test_a_file_sets_channels_limits_and_registry(tmp_path: Path) -> None:
    config = Config.load(written(tmp_path, FILE), environ={})
    assert config.registry == "embedded:///nowhere"
    limits = config.limits_over()
    assert limits.max_message_size == 4096 and limits.handshake_timeout == 2.0
    assert limits.max_connections == jesus.Limits().max_connections
    svc, listener = calc(), audit([])
    applied = config.apply([svc, listener])
    assert [str(c) for c in svc.methods["add"].channels] == ["udp+msgpack+none"]
    assert [str(c) for c in svc.methods["count"].channels] == ["http+json+none", "tcp+msgpack+none"]
    assert [str(c) for c in listener.listeners["user.*"].channels] == ["udp+json+none"]
    assert svc.schemes == {"udp", "http", "tcp"}
    assert f"calc.add over udp+msgpack+none (set by {tmp_path / 'jesus.toml'} [channels.calc])" in (
        applied
    )
    assert len(applied) == 3


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    environ = {
        "JESUS_CONFIG": str(written(tmp_path, FILE)),
        "JESUS_CHANNEL__CALC__ADD": "tcp+msgpack+zstd",
        "JESUS_LISTENER__AUDIT__USER_ALL": "unix+json,tcp",
        "JESUS_LIMIT__MAX_MESSAGE_SIZE": "1_000_000",
        "JESUS_LIMIT__SEAL_WINDOW": "2.5",
        "UNRELATED": "x",
    }
    config = Config.load(environ=environ)
    assert config.limits_over().max_message_size == 1_000_000
    assert config.limits_over().seal_window == 2.5
    svc, listener = calc(), audit([])
    applied = config.apply([svc, listener])
    assert [str(c) for c in svc.methods["add"].channels] == ["tcp+msgpack+zstd"]
    assert str(svc.methods["count"].channel) == "http+json+none"  # the file's
    assert [str(c) for c in listener.listeners["user.*"].channels] == [
        "unix+json+none",
        "tcp+msgpack+none",
    ]
    assert "calc.add over tcp+msgpack+zstd (set by JESUS_CHANNEL__CALC__ADD)" in applied
    assert config.sources == (str(tmp_path / "jesus.toml"), "environment")


def test_names_in_variables() -> None:
    assert env_name("user.*") == "USER_ALL"
    assert env_name("user-db") == "USER_DB"
    assert env_name("order.placed") == "ORDER_PLACED"
    svc = jesus.Service("user-db")

    @svc.method()
    async def get_one(data: Any) -> Any: ...

    Config.from_env({"JESUS_CHANNEL__USER_DB__GET_ONE": "http"}).apply([svc])
    assert str(svc.methods["get_one"].channel) == "http+msgpack+none"


def test_settings_for_other_services_are_left_be() -> None:
    config = Config.from_mapping({"channels": {"billing": {"charge": "udp"}}})
    svc = calc()
    assert config.apply([svc]) == []
    assert str(svc.methods["add"].channel) == "tcp+msgpack+none"


@pytest.mark.parametrize(
    ("text", "environ", "says"),
    [
        ("[channels.calc]\nad = 'udp'\n", {}, "names method 'ad' of calc, which it does not"),
        ("[listeners.audit]\n'user.created' = 'udp'\n", {}, "(listeners: user.*)"),
        ("[channels.calc]\nadd = 'udp+msgpack+zstd+x'\n", {}, "[channels.calc] add: channel"),
        ("[channels.calc]\nadd = 5\n", {}, "a channel or a list of them, got 5"),
        ("[channels]\ncalc = 'udp'\n", {}, "[channels.calc] must be a table of name = channel"),
        ("[limits]\nmax_mesage_size = 1\n", {}, "no limit named 'max_mesage_size'"),
        ("[limits]\nmax_message_size = 1.5\n", {}, "must be a whole number"),
        ("[limits]\nmax_message_size = -1\n", {}, "of at least 0"),
        ("chanels = 1\n", {}, "unknown setting(s) chanels"),
        ("[channels.calc\n", {}, "is not valid TOML"),
        ("", {"JESUS_CHANNEL__CALC": "udp"}, "JESUS_CHANNEL__CALC must be JESUS_CHANNEL__SERVICE"),
        ("", {"JESUS_CHANNEL__CALC__ADD": ""}, "JESUS_CHANNEL__CALC__ADD: channel"),
        ("", {"JESUS_LIMIT__MAX_CONNECTIONS": "many"}, "'many' is not a number"),
        ("", {"JESUS_CHANNEL__CALC__COUNTS": "udp"}, "(methods: add, count)"),
    ],
)
def test_a_mistake_is_named_with_where_it_was_made(
    tmp_path: Path, text: str, environ: dict[str, str], says: str
) -> None:
    with pytest.raises(jesus.ConfigurationError) as refused:
        Config.load(written(tmp_path, text), environ=environ).apply([calc(), audit([])])
    assert says in str(refused.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(jesus.ConfigurationError, match=r"config file .*absent\.toml does not"):
        Config.load(tmp_path / "absent.toml", environ={})


def test_two_declarations_one_variable_could_mean_are_refused() -> None:
    svc = jesus.Service("shop")

    @svc.listener("order.placed")
    async def dotted(data: Any) -> None: ...

    @svc.listener("order-placed")
    async def dashed(data: Any) -> None: ...

    with pytest.raises(jesus.ConfigurationError, match="could mean any of the listeners"):
        Config.from_env({"JESUS_LISTENER__SHOP__ORDER_PLACED": "udp"}).apply([svc])


@pytest.mark.anyio
async def test_serve_takes_the_channels_limits_and_registry_of_its_config(
    registry: str, tmp_path: Path
) -> None:
    seen: list[Any] = []
    path = written(
        tmp_path,
        f"registry = '{registry}'\n[limits]\nmax_message_size = 2048\n"
        "[channels.calc]\nadd = 'udp+msgpack'\ncount = 'http+json'\n"
        "[listeners.audit]\n'user.*' = 'udp+json'\n",
    )
    async with (
        jesus.serve(calc(), audit(seen), config=path) as node,
        jesus.Client(registry) as client,
    ):
        assert set(node.endpoints) == {"udp", "http"}  # tcp, as declared, is not served at all
        (record,) = [r for r in await client.resolver.instances("calc")]
        assert record.methods["add"].channels == ("udp+msgpack+none",)
        assert await client.call("calc.add", {"a": 1, "b": 2}) == 3
        assert [i async for i in client.stream("calc.count", {"n": 3})] == [0, 1, 2]
        assert await client.emit("user.created", {"id": 1}, mode="ack") == ["audit"]
        with pytest.raises(jesus.TooLarge):  # the server's limit, from the file
            await client.call("calc.add", {"a": 1, "b": 2, "pad": "x" * 4000})
    assert seen == [{"id": 1}]


@pytest.mark.anyio
async def test_serve_reads_the_environment_when_given_no_config(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JESUS_CHANNEL__CALC__ADD", "http+json")
    async with jesus.serve(calc(), registry=registry) as node, jesus.Client(registry) as client:
        assert set(node.endpoints) == {"http", "tcp"}
        assert await client.call("calc.add", {"a": 2, "b": 2}) == 4
    # an empty Config is no configuration: the declarations stand
    async with jesus.serve(calc(), registry=registry, config=Config()) as node:
        assert set(node.endpoints) == {"tcp"}


@pytest.mark.anyio
async def test_a_configured_channel_that_cannot_carry_the_mode_names_the_setting(
    registry: str,
) -> None:
    config = Config.from_mapping({"channels": {"calc": {"count": "udp"}}}, "ops.toml")
    with pytest.raises(jesus.ConfigurationError) as refused:
        async with jesus.serve(calc(), registry=registry, config=config):
            pass
    message = str(refused.value)
    assert "calc.count is declared 'stream' over udp+msgpack+none, which udp cannot" in message
    assert "[configured: calc.count over udp+msgpack+none (set by ops.toml [channels.calc])]" in (
        message
    )


def test_drift_names_what_runs_otherwise_than_configured() -> None:
    svc = calc()
    record = svc.methods["add"].record()
    from jesus.registry.base import InstanceRecord

    running = InstanceRecord(
        service="calc", version="1", instance_id="i1", endpoints={}, methods={"add": record}
    )
    same = Config.from_mapping({"channels": {"calc": {"add": "tcp"}}}, "a.toml")
    assert same.drift([running]) == []
    moved = Config.from_mapping({"channels": {"calc": {"add": "udp"}}}, "a.toml")
    (line,) = moved.drift([running])
    assert "calc.add over udp+msgpack+none (set by a.toml [channels.calc])" in line
    assert "instance i1 serves it over tcp+msgpack+none" in line
    gone = Config.from_mapping({"channels": {"calc": {"mul": "udp"}}}, "a.toml")
    assert "names method 'mul' of calc" in gone.drift([running])[0]


def test_drift_judges_only_the_setting_in_effect() -> None:
    from jesus.registry.base import InstanceRecord

    svc = calc()
    running = InstanceRecord(
        service="calc",
        version="1",
        instance_id="i1",
        endpoints={},
        methods={"add": svc.methods["add"].record()},
    )
    file = Config.from_mapping({"channels": {"calc": {"add": "udp"}}}, "a.toml")
    env = Config.from_env({"JESUS_CHANNEL__CALC__ADD": "tcp"})
    assert file.merged(env).drift([running]) == []
    assert len(env.merged(file).drift([running])) == 1
