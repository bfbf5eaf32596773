"""Random access to a snapshot (agent.browse.image): read() and stream() give back exactly the
image's bytes for any ranges, stream() marks zero runs instead of materialising them, and the
hole finder of extraction keeps every non-zero byte."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backup.run import BackupOptions, run_backup
from agent.browse.extract import _nonzero
from agent.browse.image import SnapshotImage

MiB = 1 << 20


@pytest.fixture
def image(repo, tmp_path):
    """A 12 MiB image of random data, zero runs, and a repeated MiB, backed up."""
    img = tmp_path / "disk.img"
    block = os.urandom(MiB)
    data = os.urandom(3 * MiB) + bytes(2 * MiB) + block + os.urandom(MiB // 3) + block + bytes(3 * MiB)
    data += os.urandom(12 * MiB - len(data))
    img.write_bytes(data)
    run_backup(repo, str(img), BackupOptions())
    snap = repo.list_snapshots()[0]
    with SnapshotImage(repo, repo.load_index(), snap) as view:
        yield view, data


ranges = st.lists(st.tuples(st.integers(0, 13 * MiB), st.integers(0, 3 * MiB)), max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranges=ranges, ahead=st.integers(0, 4 * MiB))
def test_stream_gives_each_range_exactly_with_zero_runs_marked(image, ranges, ahead):
    view, data = image
    got = [bytearray() for _ in ranges]
    for k, at, n, piece in view.stream(ranges, ahead=ahead):
        assert at == len(got[k]), "pieces come in order, without gaps"
        assert piece is None or len(piece) == n
        got[k] += bytes(n) if piece is None else piece
    for (offset, length), g in zip(ranges, got):
        assert bytes(g) == data[offset:offset + length]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 13 * MiB), length=st.integers(0, 3 * MiB))
def test_read_gives_the_image_bytes_clipped_to_its_end(image, offset, length):
    view, data = image
    assert view.read(offset, length) == data[offset:offset + length]


@settings(deadline=None)
@given(pieces=st.lists(st.tuples(st.booleans(), st.integers(1, 200_000)), max_size=8),
       step=st.sampled_from([512, 4096, 65536]))
def test_nonzero_keeps_every_nonzero_byte_and_skips_only_zero_steps(pieces, step):
    data = b"".join(os.urandom(n).replace(b"\0", b"\1") if keep else bytes(n) for keep, n in pieces)
    spans = _nonzero(data, step)
    rebuilt = bytearray(len(data))
    last = -1
    for lo, hi in spans:
        assert last < lo < hi <= len(data), "sorted, apart (neighbours are merged), inside the data"
        assert lo % step == 0 and (hi % step == 0 or hi == len(data))
        rebuilt[lo:hi] = data[lo:hi]
        last = hi
    assert bytes(rebuilt) == data
    for lo in range(0, len(data), step):  # every step left out is all zeros
        if not any(a <= lo < b for a, b in spans):
            assert not any(data[lo:lo + step])
