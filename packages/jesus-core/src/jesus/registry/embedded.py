"""The default registry: a directory of JSON files, one per live instance.

It needs no server: processes on one machine share it through the file system. Writes are
atomic (write to a temporary file, then rename), so readers never see half a record.
A record whose TTL passed, or whose process is gone, is ignored and swept. PROTOCOL.md,
"Registry records", has the rules for writers that are not jesus.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import anyio.to_thread

from jesus.errors import RegistryError
from jesus.registry.base import InstanceRecord

log = logging.getLogger(__name__)


def default_directory() -> Path:
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"jesus-registry-{os.getuid()}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRegistry:
    """`embedded://` (default directory) or `embedded:///absolute/path`."""

    def __init__(self, url: str = "embedded://") -> None:
        parts = urlsplit(url)
        self.url = url
        self.directory = Path(parts.path) if parts.path not in ("", "/") else default_directory()
        self._hostname = os.uname().nodename
        # File name -> why it was skipped, so that a bad file is reported once, not every scan.
        self._bad: dict[str, str] = {}

    def _file(self, service: str, instance_id: str) -> Path:
        return self.directory / f"{service}@{instance_id}.json"

    async def register(self, record: InstanceRecord, ttl: float) -> None:
        raw = record.to_json()
        raw["expires_at"] = time.time() + ttl
        await anyio.to_thread.run_sync(self._write, record.service, record.instance_id, raw)

    def _write(self, service: str, instance_id: str, raw: dict[str, object]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(fd, "w") as f:
                json.dump(raw, f)
            os.replace(tmp, self._file(service, instance_id))
        except OSError as exc:
            raise RegistryError(f"cannot write to the registry at {self.directory}: {exc}") from exc

    async def deregister(self, service: str, instance_id: str) -> None:
        try:
            self._file(service, instance_id).unlink(missing_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot deregister {service}@{instance_id}: {exc}") from exc

    async def list_instances(self, service: str | None = None) -> list[InstanceRecord]:
        return await anyio.to_thread.run_sync(self._scan, service)

    def _scan(self, service: str | None) -> list[InstanceRecord]:
        pattern = f"{service}@*.json" if service else "*@*.json"
        now = time.time()
        found = []
        for path in sorted(self.directory.glob(pattern)):
            try:
                record = InstanceRecord.from_json(json.loads(path.read_text()))
                if path.name != f"{record.service}@{record.instance_id}.json":
                    raise ValueError("the file name is not SERVICE@INSTANCE_ID.json")
            except FileNotFoundError:
                continue  # deregistered or swept while we listed
            except (OSError, ValueError) as exc:
                # Skipped but left in place: it may be a newer writer's, or a writer's bug to
                # see and fix; never fatal.
                reason = str(exc)
                if self._bad.get(path.name) != reason:
                    self._bad[path.name] = reason
                    log.warning("skipping registry record %s: %s", path, reason)
                continue
            self._bad.pop(path.name, None)
            local = record.host == self._hostname
            if record.expires_at < now or (local and not _pid_alive(record.pid)):
                path.unlink(missing_ok=True)
                continue
            found.append(record)
        return found

    async def aclose(self) -> None:
        return None
