"""Which local process is which: the unix peer credentials of its connection (the kernel's
word, not the process's) name the services it may be, and the daemon holds their
certificates. A process then offers only the services it is, served with their certificate
(TLS and seals, exactly as jesus.serve would), and calls as the service it is, so callees'
`allow` lists see that service proven by TLS, not the daemon."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from jesus.errors import ConfigurationError, PermissionDenied
from jesus.security import devca
from jesus.security.caller import Caller
from jesus.security.credentials import Credentials


@dataclass(frozen=True)
class Identities:
    """`names`: uid -> the services a process of that uid is. `folder` holds the CA and each
    name's certificate and key, as jesus.security.devca lays them out (ca.pem, NAME.pem,
    NAME.key)."""

    names: Mapping[int, frozenset[str]]
    folder: Path

    @classmethod
    def parse(cls, entries: Iterable[str], folder: str | os.PathLike[str]) -> Identities:
        """From `UID=NAME[,NAME...]` entries (the command line's `--identity`)."""
        names: dict[int, frozenset[str]] = {}
        for entry in entries:
            uid, sep, listed = entry.partition("=")
            if not sep or not uid.strip().isdigit() or not listed.strip():
                raise ConfigurationError(f"identity {entry!r} must be UID=NAME[,NAME...]")
            given = frozenset(n.strip() for n in listed.split(",") if n.strip())
            names[int(uid)] = names.get(int(uid), frozenset()) | given
        identities = cls(names, Path(folder))
        identities.check()
        return identities

    def check(self) -> None:
        """Every name's certificate is there, so a refusal never waits for the first call."""
        if not (self.folder / devca.CA_CERT).is_file():
            raise ConfigurationError(f"{self.folder} has no {devca.CA_CERT}")
        for name in sorted({n for names in self.names.values() for n in names}):
            for suffix in (".pem", ".key"):
                if not (self.folder / f"{name}{suffix}").is_file():
                    raise ConfigurationError(f"{self.folder} has no {name}{suffix}")

    @property
    def all_names(self) -> frozenset[str]:
        return frozenset(n for names in self.names.values() for n in names)

    def credentials(self, name: str) -> Credentials:
        return devca.credentials(self.folder, name)

    def of(self, caller: Caller) -> frozenset[str]:
        return self.names.get(caller.uid, frozenset()) if caller.uid is not None else frozenset()

    def check_offer(self, caller: Caller, service: str) -> None:
        if service not in self.of(caller):
            raise PermissionDenied(
                f"{describe(caller)} may not offer {service}: its uid is "
                f"{', '.join(sorted(self.of(caller))) or 'no service'}"
            )

    def acting_as(self, caller: Caller, claimed: str | None) -> str | None:
        """The service a process's call goes out as: the one it names in `from`, if it is
        that one; else its only one; else none (the daemon's own)."""
        names = self.of(caller)
        if claimed in names:
            return claimed
        return next(iter(names)) if len(names) == 1 else None


def describe(caller: Caller) -> str:
    return f"process {caller.pid} (uid {caller.uid})" if caller.pid else "a local process"
