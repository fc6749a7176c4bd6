"""The memcached operations the registry needs, on one node or a cluster, with failures
turned into RegistryError naming their cause: a node down or too slow, a node refusing more
connections, an item past the item size limit.

Blocking (pymemcache): the backend calls these from worker threads.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable, Iterable, Iterator
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
# The largest item the registry writes (a record is chunked past it): half of memcached's
# default item size limit.
ITEM_BYTES = 512 * 1024
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
        self._meta_checked: set[int] = set()  # ids of the node clients whose version is known

    @property
    def where(self) -> str:
        return ",".join(f"{h}:{p}" for h, p in self.servers)

    # ------------------------------------------------------------------ operations

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = self._each_node("get", keys, lambda c, ks: c.get_many(ks))
        return found

    def gets_many(self, keys: Iterable[str]) -> dict[str, tuple[bytes, Any]]:
        found: dict[str, tuple[bytes, Any]] = self._each_node(
            "gets", keys, lambda c, ks: c.gets_many(ks)
        )
        return found

    def gets(self, key: str) -> tuple[bytes | None, Any]:
        with self._named("gets", where=self._where([key])):
            value, token = self._one.gets(key)
        return value, token

    def add(self, key: str, value: bytes, expire: int = 0) -> bool:
        with self._named("add", len(value), self._where([key])):
            return bool(self._one.add(key, value, expire=expire, noreply=False))

    def cas(self, key: str, value: bytes, token: Any, expire: int = 0) -> bool:
        with self._named("cas", len(value), self._where([key])):
            return bool(self._one.cas(key, value, token, expire=expire, noreply=False))

    def set(self, key: str, value: bytes, expire: int) -> None:
        with self._named("set", len(value), self._where([key])):
            if not self._one.set(key, value, expire=expire, noreply=False):
                raise RegistryError(f"memcached at {self.where} did not store {key}")

    def touch(self, key: str, expire: int) -> bool:
        with self._named("touch", where=self._where([key])):
            return bool(self._one.touch(key, expire=expire, noreply=False))

    def delete(self, key: str) -> None:
        with self._named("delete", where=self._where([key])):
            self._one.delete(key, noreply=False)

    def versions(self, keys: Iterable[str]) -> dict[str, int]:
        """The CAS value of each key that exists, without its value: memcached's meta get
        (`mg KEY c`), one round trip per node. A heartbeat asks this of its own keys."""

        def meta_get(client: Any, keys: list[str]) -> dict[str, int]:
            self._check_meta(client)
            command = b"".join(b"mg %s c\r\n" % k.encode() for k in keys) + b"mn"
            lines = client.raw_command(command, b"MN\r\n").split(b"\r\n")[: len(keys)]
            found: dict[str, int] = {}
            for key, line in zip(keys, lines, strict=False):
                words = line.split()
                if words[:1] == [b"HD"]:
                    found[key] = int(next(w[1:] for w in words[1:] if w[:1] == b"c"))
                elif words[:1] != [b"EN"]:
                    raise RegistryError(
                        f"memcached at {_address(client.server)} answered {line!r} to mg"
                    )
            return found

        found: dict[str, int] = self._each_node("mg", keys, meta_get)
        return found

    def _each_node(
        self, op: str, keys: Iterable[str], call: Callable[[Any, list[str]], Any]
    ) -> Any:
        """`call(client, keys)` for the keys of each node, merged; a node that fails is
        named, and a cluster routes around it from then on."""
        keys = list(dict.fromkeys(keys))
        by_node: dict[Any, list[str]] = {}
        for key in keys:
            by_node.setdefault(self._node(key), []).append(key)
        found: dict[str, Any] = {}
        for client, node_keys in by_node.items():
            with self._named(op, where=_address(client.server)):
                try:
                    found.update(call(client, node_keys))
                except OSError:
                    if self._hash is not None:
                        self._hash._mark_failed_server(client.server)
                    raise
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

    def _where(self, keys: list[str]) -> str:
        """The node(s) holding `keys`, to name in an error."""
        if self._hash is None:
            return self.where
        nodes = {self._hash.hasher.get_node(k) for k in keys}
        return ",".join(sorted(str(n) for n in nodes)) if None not in nodes else self.where

    def _check_meta(self, client: Any) -> None:
        """Meta commands came with memcached 1.6: say so, rather than time out on older."""
        if id(client) in self._meta_checked:
            return
        version = client.version().decode(errors="replace")
        major, _, rest = version.partition(".")
        minor = rest.partition(".")[0]
        if major.isdigit() and minor.isdigit() and (int(major), int(minor)) < (1, 6):
            raise RegistryError(
                f"memcached {version} at {_address(client.server)} is too old: the registry "
                "needs memcached 1.6 or later (meta commands)"
            )
        self._meta_checked.add(id(client))

    @contextmanager
    def _named(self, op: str, size: int | None = None, where: str = "") -> Iterator[None]:
        """memcached's failures, as RegistryError naming the node, the cause and what to do."""
        where = where or self.where
        try:
            yield
        except RegistryError:
            raise
        except MemcacheServerError as exc:
            if "too large" in str(exc).lower():
                raise RegistryLimit(
                    f"memcached at {where} refused an item of {size or 0:,} bytes as too "
                    "large for its item size limit (memcached -I, 1 MB by default); the "
                    f"registry writes items of up to {ITEM_BYTES // 1024} KiB: start memcached "
                    "with -I 1m or more"
                ) from exc
            raise RegistryError(f"memcached at {where} failed ({op}): {exc}") from exc
        except MemcacheUnknownCommandError as exc:
            # What a node answers on a connection it accepted past its limit (memcached -c)
            if self._refuses_connections():
                raise RegistryError(
                    f"memcached at {where} refuses more connections: it holds its maximum "
                    "(memcached -c, 1024 by default). Raise -c, or let each machine's node "
                    "daemon hold the registry connections for its processes (docs/scale.md)"
                ) from exc
            raise RegistryError(f"memcached at {where} answered ERROR to {op}") from exc
        except ConnectionRefusedError as exc:
            raise RegistryError(f"memcached at {where} is down (connection refused)") from exc
        except TimeoutError as exc:
            raise RegistryError(
                f"memcached at {where} did not answer ({op}) within {self.timeout:g}s"
            ) from exc
        except (MemcacheUnexpectedCloseError, ConnectionError) as exc:
            raise RegistryError(
                f"memcached at {where} closed the connection ({op}): restarted, or down?"
            ) from exc
        except (MemcacheError, OSError) as exc:
            raise RegistryError(
                f"memcached at {where} failed ({op}): {type(exc).__name__}: {exc}"
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


def _address(server: Any) -> str:
    return f"{server[0]}:{server[1]}" if isinstance(server, tuple) else str(server)
