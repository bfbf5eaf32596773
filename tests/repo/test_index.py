"""The chunk index against a dict model: bulk loads, merges into a filled index, shared 8-byte
prefixes, repeated ids, and prune's re-encoding of selected rows."""

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.repo.index import ChunkIndex, decode_segment, encode_segment, encode_segment_rows, load_segments_into
from agent.repo.packs import PackEntry

# ids drawn from a few 8-byte prefixes, so equal search keys (resolved by the other 24 bytes) are common
prefixes = st.sampled_from([bytes(8), b"\xff" * 8, b"\x80" + bytes(7), b"\x00\x01" + bytes(6)])
ids = st.one_of(st.binary(min_size=32, max_size=32),
                st.builds(lambda p, rest: p + rest, prefixes, st.binary(min_size=24, max_size=24)))
entry = st.tuples(ids, st.integers(0, 2**32 - 1), st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1),
                  st.integers(1, 2))
segment = st.lists(st.tuples(st.integers(0, 5), st.lists(entry, max_size=12)), max_size=4)


def _pack_name(n: int) -> str:
    return f"{n:02x}" * 32


@settings(max_examples=150, deadline=None)
@given(st.lists(segment, max_size=4), st.lists(st.tuples(st.integers(0, 7), st.lists(entry, max_size=12)),
                                                max_size=4))
def test_index_answers_like_a_dict_of_first_locations(segments, added):
    model: dict[bytes, tuple[str, int, int, int, int]] = {}
    decoded = []
    for seg in segments:
        packs = {}
        for pno, entries in seg:  # a pack may repeat within and across segments: later ones add nothing new
            packs.setdefault(_pack_name(pno), []).extend(PackEntry(t, cid, o, ln, r) for cid, o, ln, r, t in entries)
        plist = [(name, 100 + n, entries) for n, (name, entries) in enumerate(packs.items())]
        _, table, etab = decode_segment(encode_segment(plist), "s")
        decoded.append((table, etab))
        for name, _, entries in plist:
            for e in entries:
                model.setdefault(e.id, set()).add((name, e.type, e.offset, e.length, e.raw_length))
    idx = ChunkIndex()
    load_segments_into(idx, decoded)
    # an id in several places may resolve to any of them (all hold the same chunk)
    for cid, places in model.items():
        loc = idx.get(cid)
        assert (loc.pack_id, loc.type, loc.offset, loc.length, loc.raw_length) in places
        model[cid] = (loc.pack_id, loc.type, loc.offset, loc.length, loc.raw_length)
    for pno, entries in added:  # a night's packs into the filled index: known ids keep their location
        name = _pack_name(10 + pno)
        idx.add_pack(name, 5, [PackEntry(t, cid, o, ln, r) for cid, o, ln, r, t in entries])
        for cid, o, ln, r, t in entries:
            model.setdefault(cid, (name, t, o, ln, r))
    before_merge = {cid: idx.get(cid) for cid in model}
    idx.freeze()
    assert len(idx) == len(model)
    for cid, want in model.items():
        loc = idx.get(cid)
        assert loc == before_merge[cid]
        assert (loc.pack_id, loc.type, loc.offset, loc.length, loc.raw_length) == want
        assert cid in idx
    assert idx.known(list(model)) == [True] * len(model)
    assert idx.get(os.urandom(32)) is None
    # rows: ids sorted, columns aligned with them
    rows = idx.rows_of(sorted(model))
    assert rows == list(range(len(model)))
    assert [idx.row_id(r) for r in rows] == sorted(model)
    offsets = idx.column("offset")
    assert [offsets[r] for r in rows] == [model[cid][2] for cid in sorted(model)]
    # prune's re-encoding keeps exactly the chosen rows, with their locations
    keep = rows[::2]
    _, table, etab = decode_segment(encode_segment_rows(idx, keep, [], ["ab" * 32]), "p")
    again = ChunkIndex()
    load_segments_into(again, [(table, etab)])
    assert len(again) == len(keep)
    for r in keep:
        cid = idx.row_id(r)
        assert again.get(cid) == idx.get(cid)


def test_a_large_index_loads_and_merges_with_bounded_memory_per_chunk():
    n = 200_000
    cids = [os.urandom(32) for _ in range(n)]
    halves = [[(_pack_name(p), 1000, [PackEntry(1, c, i, 10, 20) for i, c in enumerate(part[p::50])])
               for p in range(50)] for part in (cids[: n // 2], cids[n // 2:])]
    idx = ChunkIndex()
    segs = [decode_segment(encode_segment(h), "s")[1:] for h in halves]
    load_segments_into(idx, segs)
    assert len(idx) == n and idx.nbytes == 49 * n
    assert idx.get(cids[123_456]).length == 10 and idx.get(cids[-1]).raw_length == 20
    extra = [os.urandom(32) for _ in range(1000)]
    idx.add_pack("ee" * 32, 1, [PackEntry(1, c, 0, 1, 1) for c in extra + cids[:5]])
    idx.freeze()
    assert len(idx) == n + 1000 and all(idx.known(extra + cids[-10:]))
    assert idx.get(cids[2]).pack_id != "ee" * 32
