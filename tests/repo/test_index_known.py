"""The batch membership test a backup uses agrees with per-id lookups, merged or not."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.repo.index import ChunkIndex
from agent.repo.packs import PackEntry

ids32 = st.binary(min_size=32, max_size=32)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(ids32, max_size=40), max_size=5), st.lists(ids32, max_size=40), st.booleans())
def test_known_matches_contains(packs, probes, merge):
    idx = ChunkIndex()
    for n, ids in enumerate(packs):
        idx.add_pack(f"{n:064x}", 100, [PackEntry(1, cid, 0, 10, 10) for cid in ids])
        if merge and n % 2 == 0:
            idx.freeze()
    everything = [cid for ids in packs for cid in ids] + probes
    assert idx.known(everything) == [cid in idx for cid in everything]
    assert all(idx.known([cid for ids in packs for cid in ids]))
