"""`serve(metrics=...)` and `jesus serve --metrics`: Prometheus scrapes the conventions' names
over real HTTP on loopback. The Prometheus MeterProvider is the process's global one, so each
test gives its service a name of its own."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

import jesus
import jesus_otel
from jesus.plugins import build_catalog, get_plugin_manager

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["content-type"].startswith("text/plain")
        return str(answer.read().decode())


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the one sample `name{...}` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if match is None or match[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append(float(match[3]))
    assert len(found) == 1, (name, labels, found)
    return found[0]


def service(name: str) -> jesus.Service:
    svc = jesus.Service(name, channel="tcp+msgpack")

    @svc.method()
    async def add(data: dict[str, int]) -> int:
        return data["a"] + data["b"]

    @svc.method()
    async def boom(data: Any) -> Any:
        raise ValueError("kaput")

    return svc


async def test_serve_exposes_the_conventions_names_to_prometheus(registry: str) -> None:
    name = f"calc{secrets.token_hex(3)}"
    async with (
        jesus.serve(service(name), registry=registry, metrics="127.0.0.1:0") as node,
        jesus.Client(registry) as client,
    ):
        assert node.metrics is not None and node.metrics.startswith("http://127.0.0.1:")
        for i in range(3):
            assert await client.call(f"{name}.add", {"a": i, "b": 1}) == i + 1
        with pytest.raises(jesus.RemoteFailure):
            await client.call(f"{name}.boom")
        text = await anyio.to_thread.run_sync(scrape, node.metrics)
        url = node.metrics

    add, boom = f"{name}/add", f"{name}/boom"
    ok = {"rpc_method": add, "rpc_status_code": "OK", "rpc_system_name": "jesus"}
    assert sample(text, "rpc_server_call_duration_seconds_count", **ok) == 3
    assert sample(text, "rpc_client_call_duration_seconds_count", **ok) == 3
    assert sample(text, "rpc_server_call_duration_seconds_bucket", **ok, le="+Inf") == 3
    assert sample(text, "rpc_server_call_duration_seconds_bucket", **ok, le="0.005") <= 3
    assert 0 < sample(text, "rpc_server_call_duration_seconds_sum", **ok) < 10
    assert "# TYPE rpc_server_call_duration_seconds histogram" in text
    failed = {"rpc_method": boom, "error_type": "REMOTE_FAILURE"}
    assert sample(text, "jesus_server_errors_total", **failed) == 1
    assert sample(text, "jesus_client_errors_total", **failed) == 1
    assert sample(text, "jesus_server_active_calls", rpc_method=add) == 0
    received = sample(text, "jesus_server_request_size_bytes_total", rpc_method=add)
    assert received > 0
    assert (
        sample(
            text,
            "jesus_server_request_size_bytes_total",
            jesus_channel="tcp+msgpack+none",
            rpc_method=add,
        )
        == received
    )
    for name in ("server_response", "client_request", "client_response"):
        bytes_total = f"jesus_{name}_size_bytes_total"
        assert sample(text, bytes_total, jesus_channel="tcp+msgpack+none", rpc_method=add) > 0
    assert re.search(r'^target_info\{.*service_name="', text, re.M)

    with pytest.raises(OSError):  # served only while the services are
        await anyio.to_thread.run_sync(scrape, url)


async def test_bad_metrics_options_are_refused_clearly(registry: str) -> None:
    svc = service("calcbad")
    with pytest.raises(jesus.ConfigurationError, match="must be HOST:PORT"):
        async with jesus.serve(svc, registry=registry, metrics="9464"):
            pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            jesus.ConfigurationError, match=f"cannot serve metrics on 127.0.0.1:{port}"
        ):
            async with jesus.serve(svc, registry=registry, metrics=f"127.0.0.1:{port}"):
                pass
    pm, failures = get_plugin_manager()
    pm.unregister(name="otel")
    without = build_catalog(pm, failures)
    with pytest.raises(jesus.ConfigurationError, match="JESUS_LOAD_PLUGINS"):
        async with jesus.serve(svc, registry=registry, metrics="127.0.0.1:0", catalog=without):
            pass


def test_a_meter_provider_set_before_is_not_replaced() -> None:
    script = """
import anyio, jesus
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
metrics.set_meter_provider(MeterProvider())
svc = jesus.Service("calc", channel="tcp")
async def main():
    async with jesus.serve(svc, registry="embedded://" + __import__("tempfile").mkdtemp(), metrics="127.0.0.1:0"):
        pass
try:
    anyio.run(main)
except jesus.ConfigurationError as exc:
    print("refused:", exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert "refused: a MeterProvider is already set" in result.stdout, result.stderr
    assert "PrometheusMetricReader" in result.stdout


def test_jesus_serve_metrics(registry: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jesus",
            "serve",
            "--metrics",
            "127.0.0.1:0",
            "tests.helpers.served:calc",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        serving = proc.stdout.readline()
        assert serving.startswith("serving calc"), serving + (
            proc.stderr.read() if proc.stderr else ""
        )
        shown = proc.stdout.readline()
        assert shown.startswith("metrics on http://127.0.0.1:"), shown
        url = shown.split()[-1]
        called = subprocess.run(
            [sys.executable, "-m", "jesus", "call", "calc.add", '{"a": 2, "b": 40}'],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert called.stdout.strip() == "42", called.stderr
        text = scrape(url)
        assert sample(text, "rpc_server_call_duration_seconds_count", rpc_method="calc/add") == 1
        assert 'service_name="calc"' in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_without_jesus_otel_metrics_name_the_extra(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jesus_otel.prometheus", None)  # as if not installed
    monkeypatch.delattr(jesus_otel, "prometheus", raising=False)
    with pytest.raises(jesus.ConfigurationError, match=r"jesus-core\[prometheus\]"):
        async with jesus.serve(service("calcmissing"), registry=registry, metrics=":9464"):
            pass


# The daemon and the service run in processes of their own: the test's client needs one
# backend only.
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_jesus_serve_through_the_daemon_serves_metrics_too(
    registry: str, anyio_backend: str
) -> None:
    from tests.daemon.test_cli import _start, _stop

    socket_dir = tempfile.mkdtemp(prefix="jd-", dir="/tmp")  # a unix socket path has 108 bytes
    socket = os.path.join(socket_dir, "jesus.sock")
    daemon = _start(registry, "daemon", "--socket", socket)
    served = None
    try:
        assert daemon.stdout is not None and "listening" in daemon.stdout.readline()
        served = _start(
            registry, "serve", "tests.helpers.served:calc", "--daemon", socket, "--metrics", ":0"
        )
        assert served.stdout is not None
        assert "through the daemon" in served.stdout.readline()
        shown = served.stdout.readline()
        assert shown.startswith("metrics on http://"), shown
        url = shown.split()[-1].replace("0.0.0.0", "127.0.0.1")
        async with jesus.Client(registry) as client:
            assert await client.call("calc.add", {"a": 20, "b": 22}) == 42
        text = await anyio.to_thread.run_sync(scrape, url)
        assert sample(text, "rpc_server_call_duration_seconds_count", rpc_method="calc/add") == 1
        served.send_signal(signal.SIGTERM)
        assert served.wait(timeout=15) == 0
    finally:
        if served is not None:
            _stop(served)
        _stop(daemon)
        shutil.rmtree(socket_dir, ignore_errors=True)
