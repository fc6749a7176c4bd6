"""A development CA and certificates, made the way a user makes them (jesus.security.devca),
plus a second CA nobody here trusts."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import pytest

import jesus
from jesus.security import devca


@dataclass(frozen=True)
class Pki:
    folder: Path
    untrusted: Path  # another CA, with its own "billing"

    def creds(self, name: str) -> jesus.Credentials:
        return devca.credentials(self.folder, name)

    def impostor(self, name: str) -> jesus.Credentials:
        """`name`'s certificate from the untrusted CA, trusting the real CA."""
        return jesus.Credentials.load(
            self.folder / devca.CA_CERT,
            self.untrusted / f"{name}.pem",
            self.untrusted / f"{name}.key",
        )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    devca.create_ca(folder)
    for name in ("vault", "billing", "stranger"):
        devca.issue(folder, name)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    devca.issue(folder, "expired", days=1, not_before=long_ago)
    untrusted = tmp_path_factory.mktemp("untrusted-pki")
    devca.create_ca(untrusted, name="someone else's CA")
    devca.issue(untrusted, "billing")
    devca.issue(untrusted, "vault")
    return Pki(folder, untrusted)
