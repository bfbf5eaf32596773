"""SkipMap: the ranges a backup does not store are zeroed exactly, and long ones are not read."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.source.skipmap import SKIP_MIN, SkipMap, merged, subtract

SIZE = 1 << 16
ranges = st.lists(st.tuples(st.integers(0, SIZE // 2), st.integers(0, SIZE // 4)).map(lambda t: (t[0], t[0] + t[1])),
                  max_size=20)
# long enough to be skipped unread: multiples of 4 KiB around SKIP_MIN
long_ranges = st.lists(st.tuples(st.integers(0, 64), st.integers(0, 600)).map(
    lambda t: (t[0] * 65536 + 4096 * (t[0] % 3), t[0] * 65536 + 4096 * (t[0] % 3) + t[1] * 4096 + 17)), max_size=8)


def _bits(rs, size):
    out = bytearray(size)
    for a, b in rs:
        a, b = max(a, 0), min(b, size)
        if b > a:
            out[a:b] = b"\1" * (b - a)
    return out


@given(ranges)
def test_merged_is_sorted_disjoint_and_covers_the_same(rs):
    m = merged(rs)
    assert all(a < b for a, b in m)
    assert all(m[i][1] < m[i + 1][0] for i in range(len(m) - 1))
    size = SIZE
    assert _bits(m, size) == _bits(rs, size)


@given(ranges, ranges)
def test_subtract_removes_exactly_the_cut(rs, cut):
    size = SIZE
    got = _bits(subtract(merged(rs), merged(cut)), size)
    want = bytearray(x & (1 - y) for x, y in zip(_bits(rs, size), _bits(cut, size)))
    assert got == want


@given(ranges, st.integers(0, SIZE // 2), st.integers(1, SIZE // 2))
def test_mask_zeroes_exactly_the_ranges_in_view(rs, offset, length):
    skip = SkipMap(rs)
    buf = bytearray(b"\xaa" * length)
    skip.mask(memoryview(buf), offset)
    inside = _bits(skip.ranges, offset + length)[offset:]
    assert all((b == 0) if i else (b == 0xAA) for b, i in zip(buf, inside))


@settings(max_examples=40)
@given(long_ranges)
def test_extents_skip_only_long_aligned_ranges(rs):
    size = 70 << 20
    skip = SkipMap(rs)
    data = list(skip.extents([(0, size)]))
    # read extents keep O_DIRECT alignment, and every skipped byte lies in a range (is stored as zero)
    assert all(a % 4096 == 0 and (b % 4096 == 0 or b == size) for a, b in data)
    unread = subtract([(0, size)], merged(data))
    assert unread == skip.skipped
    assert subtract(unread, skip.ranges) == []
    assert all(b - a >= SKIP_MIN and a % 4096 == 0 and b % 4096 == 0 for a, b in unread)
    # a range long enough, once aligned inwards, is skipped
    for a, b in skip.ranges:
        lo, hi = -(-a // 4096) * 4096, b // 4096 * 4096
        if hi - lo >= SKIP_MIN:
            assert subtract([(lo, hi)], unread) == []
