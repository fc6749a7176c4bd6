"""The README's security walk-through as a user runs it: a development CA, certificates,
a mutual-TLS service, and `jesus call` with and without a certificate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.integration.test_cli import JESUS, ROOT, run, run_all


def jesus_serve(target: str, registry: str, *options: str) -> subprocess.Popen[str]:
    """`jesus serve TARGET OPTIONS...` in its own process, as a user starts it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry}
    return subprocess.Popen(
        [*JESUS, "serve", target, *options],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_development_ca_and_mutual_tls_from_the_command_line(
    tmp_path: Path, registry: str
) -> None:
    certs = tmp_path / "certs"
    made = run("ca", "init", "--dir", str(certs))
    assert made.returncode == 0, made.stderr
    assert (certs / "ca.pem").is_file() and (certs / "ca.key").stat().st_mode & 0o077 == 0
    again, *issued, escape = run_all(
        ("ca", "init", "--dir", str(certs)),
        *(("ca", "issue", name, "--dir", str(certs)) for name in ("calc", "billing")),
        ("ca", "issue", "../escape", "--dir", str(certs)),
    )
    assert again.returncode == 1 and "already holds a CA" in again.stderr
    for one in issued:
        assert one.returncode == 0, one.stderr
    assert escape.returncode == 1

    ca, cert, key = (str(certs / f) for f in ("ca.pem", "calc.pem", "calc.key"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JESUS_REGISTRY": registry}
    with ThreadPoolExecutor(2) as pool:
        # The plaintext refusal checked last needs no server: it runs meanwhile.
        plaintext = pool.submit(
            run, "serve", "tests.helpers.served:pinger", "--ca", ca, "--cert", cert, "--key", key
        )
        server = jesus_serve(
            "tests.helpers.served:calc", registry, "--ca", ca, "--cert", cert, "--key", key
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            assert line.startswith("serving calc") and "?tls=1" in line, line
            add = ("call", "calc.add", '{"a": 1, "b": 2}')
            billing = ("--cert", str(certs / "billing.pem"), "--key", str(certs / "billing.key"))
            tls_env = {
                "JESUS_CA": ca,
                "JESUS_CERT": str(certs / "billing.pem"),
                "JESUS_KEY": str(certs / "billing.key"),
            }
            env_run = pool.submit(  # alongside the others: they are independent
                subprocess.run,
                [*JESUS, *add],
                env={**env, **tls_env},
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            no_tls, no_cert, good = run_all(
                add, (*add, "--ca", ca), (*add, "--ca", ca, *billing), registry=registry
            )
            from_env = env_run.result()

            assert no_tls.returncode == 1 and "certificate is not trusted" in no_tls.stderr
            assert no_cert.returncode == 1
            assert "requires a client certificate" in no_cert.stderr, no_cert.stderr
            assert good.returncode == 0, good.stderr
            assert json.loads(good.stdout) == 3
            assert from_env.returncode == 0 and json.loads(from_env.stdout) == 3, from_env.stderr
        finally:
            server.send_signal(signal.SIGTERM)
            _, err = server.communicate(timeout=30)
        refused = [line for line in err.splitlines() if "refused the TLS connection" in line]
        assert 1 <= len(refused) <= 2, err  # one line per refused peer
        assert "Traceback" not in err

        # A plaintext listener under TLS: serve refuses in one line, naming it and the way out.
        udp = plaintext.result()
        assert udp.returncode == 1
        assert "pinger.ping on udp" in udp.stderr and "allow_plaintext" in udp.stderr
        assert "Traceback" not in udp.stderr


def test_jesus_call_reaches_a_sealed_method_with_its_certificate(
    tmp_path: Path, registry: str
) -> None:
    certs = tmp_path / "certs"
    assert run("ca", "init", "--dir", str(certs)).returncode == 0
    for issued in run_all(
        *(("ca", "issue", name, "--dir", str(certs)) for name in ("ledger", "billing"))
    ):
        assert issued.returncode == 0
    ca = str(certs / "ca.pem")
    mine = ("--ca", ca, "--cert", str(certs / "ledger.pem"), "--key", str(certs / "ledger.key"))
    server = jesus_serve("tests.helpers.served:ledger", registry, *mine)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().startswith("serving ledger")
        billing = (
            "--ca",
            ca,
            "--cert",
            str(certs / "billing.pem"),
            "--key",
            str(certs / "billing.key"),
        )
        good, bare, listing = run_all(
            ("call", "ledger.record", '{"amount": 5}', *billing),
            ("call", "ledger.record", '{"amount": 5}'),
            ("services",),
            registry=registry,
        )
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout) == {"by": "billing", "entry": {"amount": 5}}
        assert bare.returncode == 1 and "is sealed: give the client its credentials" in bare.stderr
        assert "ledger.record  [response sealed encrypt] over udp+msgpack+none" in listing.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
