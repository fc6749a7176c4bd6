"""Sets of names on memcached, in pages of bounded size.

A set at KEY is page 0 at `KEY`, pages 1... at `KEY:1`..., and their count at `KEY:pages`
(absent: one page). Each page is a JSON list of strings of at most PAGE_BYTES. A member lives
on page `crc32(member) % count`; a full page doubles the count, and members already placed
stay where they are, so a member is on one of a few pages: `crc32 % c` for each count `c`
the set had (1, 2, 4... up to now). So adding, removing or finding a member touches one page,
or a few, whatever the size of the set, and no item nears memcached's item size limit.

Pages are changed by compare-and-set (`gets`, then `cas`, or `add` when missing), retried on
conflict, so writers racing each other never lose one another. A page emptied expires after
a day (EMPTY_TTL); written again, it never expires.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from jesus.errors import RegistryError, RegistryLimit
from jesus_schema_memcache.store import Store

PAGE_BYTES = 16 * 1024
MAX_PAGES = 1 << 16
CAS_ATTEMPTS = 100
EMPTY_TTL = 86_400


def page_key(key: str, page: int) -> str:
    return key if page == 0 else f"{key}:{page}"


def count_key(key: str) -> str:
    return f"{key}:pages"


def slot(member: str, pages: int) -> int:
    return zlib.crc32(member.encode()) % pages


def candidates(member: str, pages: int) -> list[int]:
    """The pages `member` may be on: where each page count the set had would put it."""
    found, count = [], pages
    while count >= 1:
        found.append(slot(member, count))
        count //= 2
    return sorted(set(found))


def decode(raw: bytes | None, key: str) -> list[str]:
    """A page's members; ValueError names the key when it is not a JSON list of strings."""
    if raw is None:
        return []
    members = json.loads(raw)
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ValueError(f"{key} is not a JSON list of strings")
    return members


def encode(members: Iterable[str]) -> bytes:
    return json.dumps(sorted(set(members)), separators=(",", ":")).encode()


def page_count(raw: bytes | None, key: str) -> int:
    if raw is None:
        return 1
    count = int(raw)
    if count < 1 or count > MAX_PAGES or count & (count - 1):
        raise ValueError(f"{count_key(key)} holds {count}, not a power of two")
    return count


class Listing:
    """What `read` found of some sets: each member with the page it is on."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, str]] = {}  # set key -> member -> page key
        self.present: set[str] = set()  # set keys of which some page exists

    def of(self, key: str) -> dict[str, str]:
        return self.members.get(key, {})


def read(store: Store, keys: Iterable[str]) -> Listing:
    """Every member of each set: one round trip, and a second for sets of several pages."""
    keys = list(dict.fromkeys(keys))
    listing = Listing()
    found = store.get_many([k for key in keys for k in (key, count_key(key))])
    more: list[tuple[str, str]] = []
    for key in keys:
        for number in range(1, page_count(found.get(count_key(key)), key)):
            more.append((key, page_key(key, number)))
    found.update(store.get_many(p for _, p in more))
    for key, page in [(key, key) for key in keys] + more:
        raw = found.get(page)
        if raw is None:
            continue
        listing.present.add(key)
        members = listing.members.setdefault(key, {})
        for member in decode(raw, page):
            members[member] = page
    return listing


_FULL = object()


def _update(
    store: Store, page: str, change: Callable[[list[str]], list[str] | object | None]
) -> object | list[str] | None:
    """Compare-and-set loop on one page. `change` gets its members and returns the new list,
    None to leave it, or _FULL. Returns what `change` last returned."""
    for _ in range(CAS_ATTEMPTS):
        raw, token = store.gets(page)
        new = change(decode(raw, page))
        if new is None or new is _FULL:
            return new
        assert isinstance(new, list)
        data = encode(new)
        expire = 0 if new else EMPTY_TTL
        if token is None:
            if not new or store.add(page, data, expire):
                return new
        elif store.cas(page, data, token, expire):
            return new
    raise RegistryError(f"could not update {page}: {CAS_ATTEMPTS} conflicting writes in a row")


def add(store: Store, key: str, member: str) -> str:
    """Put `member` in the set at `key` (nothing if its page has it already); returns the
    key of the page it is on."""

    def change(members: list[str]) -> Any:
        if member in members:
            return None
        if len(encode([*members, member])) > PAGE_BYTES and members:
            return _FULL
        return [*members, member]

    for _ in range(CAS_ATTEMPTS):
        raw, token = store.gets(count_key(key))
        count = page_count(raw, key)
        page = page_key(key, slot(member, count))
        if _update(store, page, change) is not _FULL:
            return page
        if count * 2 > MAX_PAGES:
            raise RegistryLimit(f"the index {key} has {count} full pages: it holds no more")
        grown = str(count * 2).encode()
        if token is None:
            store.add(count_key(key), grown)
        else:
            store.cas(count_key(key), grown, token)
        # won or lost, the count grew: try again with it
    raise RegistryError(f"could not add to {key}: {CAS_ATTEMPTS} conflicting writes in a row")


def remove(store: Store, pages: dict[str, set[str]]) -> dict[str, list[str]]:
    """Take members out of the pages named (page key -> members): one compare-and-set per
    page. Returns the pages that changed, with what they hold now."""
    changed: dict[str, list[str]] = {}
    for page, gone in pages.items():

        def change(members: list[str], gone: set[str] = gone) -> list[str] | None:
            return [m for m in members if m not in gone] if gone & set(members) else None

        left = _update(store, page, change)
        if isinstance(left, list):
            changed[page] = left
    return changed


def pages_of(store: Store, keys: Iterable[str], member: str) -> dict[str, set[str]]:
    """The page keys `member` may be on in each set of `keys` (page key -> {member}), for
    `remove`: one round trip for the page counts."""
    keys = list(keys)
    counts = store.get_many(count_key(key) for key in keys)
    return {
        page_key(key, p): {member}
        for key in keys
        for p in candidates(member, page_count(counts.get(count_key(key)), key))
    }


def locate(store: Store, wanted: dict[tuple[str, str], str | None]) -> dict[tuple[str, str], Any]:
    """Where each (set key, member) is: its page key and that page's CAS value; absent when
    the set does not hold it. The page named in `wanted` (where it was seen last) is looked
    at first, then the member's other pages. Two round trips."""
    got = store.gets_many(
        [p for p in wanted.values() if p is not None] + [count_key(k) for k, _ in wanted]
    )
    found: dict[tuple[str, str], Any] = {}
    rest: dict[tuple[str, str], list[str]] = {}
    for (key, member), hint in wanted.items():
        if hint in got and member in decode(got[hint][0], hint):
            found[(key, member)] = (hint, int(got[hint][1]))
            continue
        count = page_count(got.get(count_key(key), (None, None))[0], key)
        rest[(key, member)] = [page_key(key, p) for p in candidates(member, count)]
    got.update(store.gets_many({p for ps in rest.values() for p in ps} - set(got)))
    for (key, member), ps in rest.items():
        for page in ps:
            if page in got and member in decode(got[page][0], page):
                found[(key, member)] = (page, int(got[page][1]))
                break
    return found
