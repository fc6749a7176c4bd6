"""`jesus serve --config FILE` serves the channels a file and the environment say, and
`jesus check --config FILE` sees whether what runs is what they say. Separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
JESUS = [sys.executable, "-m", "jesus"]
SERVICE = """
import jesus

calc = jesus.Service("calc", channel="tcp")


@calc.method(request={"type": "object", "required": ["a", "b"]})
async def add(data):
    return data["a"] + data["b"]


@calc.method(mode="stream")
async def count(data):
    for i in range(data["n"]):
        yield i
"""


def test_serve_call_services_and_check_follow_the_config(tmp_path: Path) -> None:
    (tmp_path / "calc.py").write_text(SERVICE)
    config = tmp_path / "jesus.toml"
    config.write_text(
        f"registry = 'embedded://{tmp_path / 'reg'}'\n"
        "[channels.calc]\nadd = 'udp+msgpack'\ncount = 'http+json'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("JESUS_")}
    env["PYTHONPATH"] = str(ROOT)

    def jesus(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*JESUS, *args],
            cwd=tmp_path,
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    server = subprocess.Popen(
        [*JESUS, "-v", "serve", "calc:calc", "--config", str(config)],
        cwd=tmp_path,
        env={**env, "JESUS_CHANNEL__CALC__ADD": "tcp+json"},  # over the file's udp
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving calc"), line + (
            server.stderr.read() if server.stderr else ""
        )
        assert "http://" in line and "tcp://" in line and "udp://" not in line

        # All at once: they do not depend on one another, and each spends most of its time
        # starting Python.
        with ThreadPoolExecutor(6) as pool:
            runs = [
                pool.submit(jesus, "services", "--config", str(config)),
                pool.submit(jesus, "call", "calc.add", '{"a": 1, "b": 2}', "--config", str(config)),
                pool.submit(jesus, "call", "calc.count", '{"n": 2}', "--config", str(config)),
                pool.submit(jesus, "check", "--config", str(config)),
                pool.submit(
                    jesus, "check", "--config", str(config), JESUS_CHANNEL__CALC__ADD="tcp+json"
                ),
                pool.submit(jesus, "check", "--config", str(tmp_path / "nope.toml")),
            ]
            listing, added, counted, drifted, agreed, wrong = (run.result() for run in runs)

        assert listing.returncode == 0, listing.stderr
        assert "calc.add  [response] over tcp+json+none" in listing.stdout
        assert "calc.count  [stream] over http+json+none" in listing.stdout
        assert added.returncode == 0 and json.loads(added.stdout) == 3, added.stderr
        assert counted.stdout.split() == ["0", "1"]

        # The file alone says udp for add: what runs is not that.
        assert drifted.returncode == 1, drifted.stdout + drifted.stderr
        assert "CONFIG       calc.add over udp+msgpack+none (set by " in drifted.stdout
        assert "serves it over tcp+json+none" in drifted.stdout
        assert f"channels as configured by {config}: 1 difference(s)" in drifted.stdout
        # With the same variable as the server had, check finds them in effect.
        assert agreed.returncode == 0, agreed.stdout + agreed.stderr
        assert f"configured by {config} and environment: no difference(s)" in agreed.stdout

        assert wrong.returncode == 1
        assert wrong.stderr.strip() == f"jesus: config file {tmp_path / 'nope.toml'} does not exist"
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "configured: calc.add over tcp+json+none (set by JESUS_CHANNEL__CALC__ADD)" in err
