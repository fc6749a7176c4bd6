"""Paged sets (jesus_schema_memcache.pages) on a real memcached: sets of any size, in pages
that stay small, and members found on the few pages they may be on."""

from __future__ import annotations

import uuid

import pytest

from jesus_schema_memcache import pages
from jesus_schema_memcache.store import Store


@pytest.fixture
def store(memcached_address: str) -> Store:
    host, _, port = memcached_address.rpartition(":")
    return Store([(host, int(port))], timeout=1.0, connections=2)


def test_a_large_set_spreads_over_few_levels_of_small_pages(store: Store) -> None:
    key = f"t{uuid.uuid4().hex}:set"
    members = [f"instance-{i:06d}" for i in range(3000)]  # 54 KB of names: over 3 pages
    placed = {m: pages.add(store, key, m) for m in members}
    listing = pages.read(store, [key])
    assert listing.of(key) == placed  # each where add said, none twice, none lost
    levels = pages.level_count(
        store.get_many([pages.levels_key(key)]).get(pages.levels_key(key)), key
    )
    assert levels <= 2, levels  # 7 pages at most, for 3.3 pages' worth
    everything = [pages.page_key(key, lv, n) for lv in range(levels + 1) for n in range(1 << lv)]
    assert max(len(v) for v in store.get_many(everything).values()) <= pages.PAGE_BYTES
    # adding again changes nothing; each member is on one of its chain's pages
    assert pages.add(store, key, members[123]) == placed[members[123]]
    for m in members[:50]:
        assert placed[m] in pages.chain(key, m, levels)


def test_members_are_found_and_removed_on_their_own_pages(store: Store) -> None:
    key = f"t{uuid.uuid4().hex}:set"
    members = [f"m{i:05d}" for i in range(2500)]
    placed = {m: pages.add(store, key, m) for m in members}
    gone = members[::7]
    wanted = {(key, m): None for m in gone}
    found = pages.locate(store, wanted)
    assert {m: found[(key, m)][0] for _, m in found} == {m: placed[m] for m in gone}
    for m in gone[:20]:  # as deregistering does without knowing the page
        pages.remove(store, pages.pages_of(store, [key], m))
    by_page: dict[str, set[str]] = {}
    for m in gone[20:]:  # as a reader does, knowing it
        by_page.setdefault(placed[m], set()).add(m)
    pages.remove(store, by_page)
    assert set(pages.read(store, [key]).of(key)) == set(members) - set(gone)
    assert pages.locate(store, {(key, gone[0]): placed[gone[0]]}) == {}
