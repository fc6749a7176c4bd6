"""The memcached operations the registry needs, on one node or a cluster, with failures
turned into RegistryError naming their cause: a node down or too slow, a node refusing more
connections, an item past the item size limit.

Blocking (pymemcache): the backend calls these from worker threads.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from pymemcache.client.base import PooledClient
from pymemcache.client.hash import HashClient
from pymemcache.exceptions import (
    MemcacheError,
    MemcacheServerError,
    MemcacheUnexpectedCloseError,
    MemcacheUnknownCommandError,
)

from jesus.errors import RegistryError, RegistryLimit

# Seconds a cluster routes around a node that failed before it tries that node again.
DEAD_TIMEOUT = 30.0
_SAFE_KEY = re.compile(r"^[!-~]{1,240}$")  # printable ASCII, no space: what memcached takes
_TOO_MANY = b"ERROR Too many open connections"


def safe_key(key: str) -> str:
    """`key`, or a digest of it when memcached would refuse it (too long, spaces, non-ASCII):
    names come from services, not from us."""
    if _SAFE_KEY.match(key):
        return key
    return "jesus-h:" + hashlib.sha256(key.encode()).hexdigest()


class Store:
    def __init__(self, servers: list[tuple[str, int]], timeout: float, connections: int) -> None:
        self.servers = servers
        self.timeout = timeout
        common: dict[str, Any] = {
            "connect_timeout": timeout,
            "timeout": timeout,
            "default_noreply": False,
            "allow_unicode_keys": False,
        }
        self._hash: HashClient | None = None
        if len(servers) == 1:
            self._one: Any = PooledClient(servers[0], max_pool_size=connections, **common)
        else:
            # Several nodes act as one: keys spread by rendezvous hashing. A node that fails
            # is routed around at once (its keys go to the others, where the heartbeats
            # write them again) and tried again after DEAD_TIMEOUT.
            self._hash = HashClient(
                servers,
                use_pooling=True,
                max_pool_size=connections,
                retry_attempts=0,
                dead_timeout=DEAD_TIMEOUT,
                **common,
            )
            self._one = self._hash
        self._meta_checked = False

    @property
    def where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.servers)

    # ------------------------------------------------------------------ operations

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        with self._named("get"):
            found: dict[str, bytes] = self._one.get_many(keys)
        return found

    def gets_many(self, keys: Iterable[str]) -> dict[str, tuple[bytes, Any]]:
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        with self._named("gets"):
            found: dict[str, tuple[bytes, Any]] = self._one.gets_many(keys)
        return found

    def gets(self, key: str) -> tuple[bytes | None, Any]:
        with self._named("gets"):
            value, token = self._one.gets(key)
        return value, token

    def add(self, key: str, value: bytes, expire: int = 0) -> bool:
        with self._named("add", len(value)):
            return bool(self._one.add(key, value, expire=expire, noreply=False))

    def cas(self, key: str, value: bytes, token: Any, expire: int = 0) -> bool:
        with self._named("cas", len(value)):
            return bool(self._one.cas(key, value, token, expire=expire, noreply=False))

    def set(self, key: str, value: bytes, expire: int) -> None:
        with self._named("set", len(value)):
            if not self._one.set(key, value, expire=expire, noreply=False):
                raise RegistryError(f"memcached at {self.where} did not store {key}")

    def touch(self, key: str, expire: int) -> bool:
        with self._named("touch"):
            return bool(self._one.touch(key, expire=expire, noreply=False))

    def delete(self, key: str) -> None:
        with self._named("delete"):
            self._one.delete(key, noreply=False)

    def versions(self, keys: Iterable[str]) -> dict[str, int]:
        """The CAS value of each key that exists, without its value: memcached's meta get
        (`mg KEY c`), one round trip per node. A heartbeat asks this of its own keys."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return {}
        by_node: dict[Any, list[str]] = {}
        for key in keys:
            by_node.setdefault(self._node(key), []).append(key)
        found: dict[str, int] = {}
        with self._named("mg"):
            self._check_meta()
            for client, node_keys in by_node.items():
                command = b"".join(b"mg %s c\r\n" % k.encode() for k in node_keys) + b"mn"
                reply = client.raw_command(command, b"MN\r\n")
                lines = reply.split(b"\r\n")[: len(node_keys)]
                for key, line in zip(node_keys, lines, strict=False):
                    words = line.split()
                    if words[:1] == [b"HD"]:
                        found[key] = int(next(w[1:] for w in words[1:] if w[:1] == b"c"))
                    elif words[:1] != [b"EN"]:
                        raise RegistryError(f"memcached at {self.where} answered {line!r} to mg")
        return found

    def close(self) -> None:
        self._one.close()

    # ------------------------------------------------------------------ plumbing

    def _node(self, key: str) -> Any:
        if self._hash is None:
            return self._one
        server = self._hash.hasher.get_node(key)
        if server is None:
            raise RegistryError(f"every memcached node of {self.where} is down")
        return self._hash.clients[server]

    def _check_meta(self) -> None:
        """Meta commands came with memcached 1.6: say so, rather than time out on older."""
        if self._meta_checked:
            return
        for version in self._versions():
            major, _, rest = version.partition(".")
            minor = rest.partition(".")[0]
            if major.isdigit() and minor.isdigit() and (int(major), int(minor)) < (1, 6):
                raise RegistryError(
                    f"memcached {version} at {self.where} is too old: the registry needs "
                    "memcached 1.6 or later (meta commands)"
                )
        self._meta_checked = True

    def _versions(self) -> list[str]:
        clients = [self._one] if self._hash is None else list(self._hash.clients.values())
        return [c.version().decode(errors="replace") for c in clients]

    @contextmanager
    def _named(self, op: str, size: int | None = None) -> Iterator[None]:
        """memcached's failures, as RegistryError naming the cause and what to do."""
        try:
            yield
        except RegistryError:
            raise
        except MemcacheServerError as exc:
            if "too large" in str(exc).lower():
                raise RegistryLimit(
                    f"memcached at {self.where} refused an item of {size or 0:,} bytes as too "
                    "large for its item size limit (memcached -I; 1 MB by default, the "
                    f"registry writes items of up to 1 MB): start memcached with -I 2m ({exc})"
                ) from exc
            raise RegistryError(f"memcached at {self.where} failed ({op}): {exc}") from exc
        except MemcacheUnknownCommandError as exc:
            # What a node answers on a connection it accepted past its limit (memcached -c)
            if self._refuses_connections():
                raise RegistryError(
                    f"memcached at {self.where} refuses more connections: it holds its maximum "
                    "(memcached -c, 1024 by default). Raise -c, or let each machine's node "
                    "daemon hold the registry connections for its processes (docs/scale.md)"
                ) from exc
            raise RegistryError(f"memcached at {self.where} answered ERROR to {op}") from exc
        except ConnectionRefusedError as exc:
            raise RegistryError(f"memcached at {self.where} is down (connection refused)") from exc
        except TimeoutError as exc:
            raise RegistryError(
                f"memcached at {self.where} did not answer ({op}) within {self.timeout:g}s"
            ) from exc
        except (MemcacheUnexpectedCloseError, ConnectionError) as exc:
            raise RegistryError(
                f"memcached at {self.where} closed the connection ({op}): restarted, or down?"
            ) from exc
        except (MemcacheError, OSError) as exc:
            raise RegistryError(
                f"memcached at {self.where} failed ({op}): {type(exc).__name__}: {exc}"
            ) from exc

    def _refuses_connections(self) -> bool:
        for host, port in self.servers:
            try:
                with socket.create_connection((host, port), timeout=self.timeout) as probe:
                    probe.settimeout(min(self.timeout, 0.2))
                    if probe.recv(len(_TOO_MANY)).startswith(_TOO_MANY):
                        return True
            except OSError:
                continue
        return False
