"""Sets of names on memcached, in pages of bounded size.

A set at KEY has levels 0, 1... L of pages, L at `KEY:levels` (absent: 0): level 0 is the
one page at `KEY`, level l >= 1 has 2**l pages at `KEY:l:0` ... `KEY:l:(2**l - 1)`. Each page
is a JSON list of strings of at most PAGE_BYTES. A member is added at the last level, on page
`sha256("l:member")[:4] % 2**l` (big-endian); when that page is full, the set gets a level
more. Members never move, so a member is on one of its L + 1 pages (one per level): adding,
removing or finding one touches a page or those few, whatever the size of the set, and no
item nears memcached's item size limit. A set of one page is a plain JSON list at KEY.

Pages are changed by compare-and-set (`gets`, then `cas`, or `add` when missing), retried on
conflict, so writers racing each other never lose one another. A page emptied expires after
a day (EMPTY_TTL); written again, it never expires.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

from jesus.errors import RegistryError, RegistryLimit
from jesus_schema_memcache.store import Store

PAGE_BYTES = 16 * 1024
MAX_LEVELS = 16
CAS_ATTEMPTS = 100
EMPTY_TTL = 86_400


def levels_key(key: str) -> str:
    return f"{key}:levels"


def slot(member: str, level: int) -> int:
    """The page `member` goes on at `level` (of 2**level pages): a hash of its own for each
    level, so that members sharing a full page spread over the next level."""
    digest = hashlib.sha256(f"{level}:{member}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % (1 << level)


def page_key(key: str, level: int, number: int) -> str:
    return key if level == 0 else f"{key}:{level}:{number}"


def pages_of_level(key: str, level: int) -> list[str]:
    return [page_key(key, level, n) for n in range(1 << level)]


def chain(key: str, member: str, levels: int) -> list[str]:
    """The pages `member` may be on in a set of `levels` levels (0 ... levels), first to
    last: it is added on the last."""
    return [page_key(key, level, slot(member, level)) for level in range(levels + 1)]


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


def level_count(raw: bytes | None, key: str) -> int:
    if raw is None:
        return 0
    levels = int(raw)
    if not 0 <= levels <= MAX_LEVELS:
        raise ValueError(f"{levels_key(key)} holds {levels}, not 0 to {MAX_LEVELS}")
    return levels


class Listing:
    """What `read` found of some sets: each member with the page it is on."""

    def __init__(self) -> None:
        self.members: dict[str, dict[str, str]] = {}  # set key -> member -> page key
        self.present: set[str] = set()  # set keys of which some page exists

    def of(self, key: str) -> dict[str, str]:
        return self.members.get(key, {})


def read(store: Store, keys: Iterable[str]) -> Listing:
    """Every member of each set: one round trip, and a second for sets of several levels."""
    keys = list(dict.fromkeys(keys))
    listing = Listing()
    found = store.get_many([k for key in keys for k in (key, levels_key(key))])
    more: list[tuple[str, str]] = []
    for key in keys:
        for level in range(1, level_count(found.get(levels_key(key)), key) + 1):
            more += [(key, page) for page in pages_of_level(key, level)]
    found.update(store.get_many(page for _, page in more))
    for key, page in [(key, key) for key in keys] + more:
        raw = found.get(page)
        if raw is None:
            continue
        listing.present.add(key)
        members = listing.members.setdefault(key, {})
        for member in decode(raw, page):
            members[member] = page
    return listing


def _write(store: Store, page: str, members: list[str], token: Any) -> bool:
    """Compare-and-set one page; False when another writer got in between."""
    expire = 0 if members else EMPTY_TTL
    if token is None:
        return not members or store.add(page, encode(members), expire)
    return store.cas(page, encode(members), token, expire)


def _update(store: Store, page: str, change: Callable[[list[str]], list[str] | None]) -> Any:
    """Compare-and-set loop on one page. `change` gets its members and returns the new list,
    or None to leave it. Returns what `change` last returned."""
    for _ in range(CAS_ATTEMPTS):
        raw, token = store.gets(page)
        new = change(decode(raw, page))
        if new is None:
            return None
        if _write(store, page, new, token):
            return new
    raise RegistryError(f"could not update {page}: {CAS_ATTEMPTS} conflicting writes in a row")


def add(store: Store, key: str, member: str) -> str:
    """Put `member` in the set at `key` (nothing if one of its pages has it already); returns
    the key of the page it is on. Reads its pages (one per level) in one round trip."""
    for _ in range(CAS_ATTEMPTS):
        raw, token = store.gets(levels_key(key))
        levels = level_count(raw, key)
        pages = chain(key, member, levels)
        got = store.gets_many(pages)
        for page in pages:
            if page in got and member in decode(got[page][0], page):
                return page
        last = pages[-1]
        value, page_token = got.get(last, (None, None))
        members = decode(value, last)
        if not members or len(encode([*members, member])) <= PAGE_BYTES:
            if _write(store, last, [*members, member], page_token):
                return last
            continue  # another writer got in between: read again
        if levels >= MAX_LEVELS:
            raise RegistryLimit(f"the index {key} has {levels} full levels: it holds no more")
        grown = str(levels + 1).encode()
        if token is None:
            store.add(levels_key(key), grown)
        else:
            store.cas(levels_key(key), grown, token)
        # won or lost, there is a level more: try again on it
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
    """The pages `member` may be on in each set of `keys` (page key -> {member}), for
    `remove`: one round trip for the level counts."""
    keys = list(keys)
    levels = store.get_many(levels_key(key) for key in keys)
    return {
        page: {member}
        for key in keys
        for page in chain(key, member, level_count(levels.get(levels_key(key)), key))
    }


def locate(store: Store, wanted: dict[tuple[str, str], str | None]) -> dict[tuple[str, str], Any]:
    """Where each (set key, member) is: its page key and that page's CAS value; absent when
    the set does not hold it. The page named in `wanted` (where it was seen last) is looked
    at first, then the member's other pages. Two round trips."""
    got = store.gets_many(
        [p for p in wanted.values() if p is not None] + [levels_key(k) for k, _ in wanted]
    )
    found: dict[tuple[str, str], Any] = {}
    rest: dict[tuple[str, str], list[str]] = {}
    for (key, member), hint in wanted.items():
        if hint in got and member in decode(got[hint][0], hint):
            found[(key, member)] = (hint, int(got[hint][1]))
            continue
        levels = level_count(got.get(levels_key(key), (None, None))[0], key)
        rest[(key, member)] = chain(key, member, levels)
    got.update(store.gets_many({p for ps in rest.values() for p in ps} - set(got)))
    for (key, member), ps in rest.items():
        for page in ps:
            if page in got and member in decode(got[page][0], page):
                found[(key, member)] = (page, int(got[page][1]))
                break
    return found
