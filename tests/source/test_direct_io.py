"""Direct (O_DIRECT) reads of the source: the same bytes as cached reads, and the page cache left alone."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backup.buffers import BufferPool
from agent.backup.run import BackupOptions, run_backup
from agent.repo.cache import ObjectCache
from agent.repo.format import RepoParams
from agent.repo.repository import Repository
from agent.source.device import DIRECT_ALIGN, open_source
from backends.local import LocalBackend
from crypto.kdf import TEST_PARAMS
from tests.source.cache_helpers import direct_image
from tests.source.cache_helpers import evict as _evict
from tests.source.cache_helpers import resident_fraction as _resident_fraction

SIZE = (3 << 20) + 1234  # not a multiple of the alignment: the tail is read through the cache


@pytest.fixture
def image(tmp_path):
    return direct_image(tmp_path, SIZE)


def _read_all(src, buf: memoryview, offset: int) -> bytes:
    got = 0
    while got < len(buf):
        n = src.read_into(buf[got:], offset + got)
        if n == 0:
            break
        got += n
    return bytes(buf[:got])


def test_direct_fd_is_opened_only_when_asked(image):
    with open_source(str(image), direct=True) as src:
        assert src.direct_fd is not None
        assert os.fstat(src.direct_fd).st_ino == os.stat(image).st_ino
    with open_source(str(image)) as src:
        assert src.direct_fd is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blocks=st.integers(0, SIZE // DIRECT_ALIGN), shift=st.sampled_from([0, 0, 1, 512, 2048]),
       length=st.integers(1, 1 << 20), aligned_len=st.booleans())
def test_read_into_matches_cached_reads(image, blocks, shift, length, aligned_len):
    """Aligned and unaligned offsets and lengths, into a page-aligned buffer, give the file's bytes."""
    offset = blocks * DIRECT_ALIGN + shift
    if aligned_len:
        length = max(DIRECT_ALIGN, length - length % DIRECT_ALIGN)
    expected = image.read_bytes()[offset:offset + length]
    pool = BufferPool(1 << 20, limit=1)
    with open_source(str(image), direct=True) as src:
        assert _read_all(src, memoryview(pool.take())[:length], offset) == expected
        assert src.direct_ok  # aligned buffers never make it give up


def test_unaligned_buffer_falls_back_to_cached_reads(image):
    """A buffer direct I/O refuses (EINVAL) still gets the right bytes, through the page cache."""
    buf = memoryview(bytearray((1 << 20) + 1))[1:]  # one byte past the allocation's alignment
    with open_source(str(image), direct=True) as src:
        at = 4 * DIRECT_ALIGN
        assert _read_all(src, buf, at) == image.read_bytes()[at:at + (1 << 20)]
        assert _read_all(src, buf, 0) == image.read_bytes()[:1 << 20]


def test_backup_reads_past_the_page_cache_and_stores_the_same_snapshot(tmp_path):
    img = direct_image(tmp_path, 24 << 20)
    _evict(img)
    if _resident_fraction(img) > 0.1:
        pytest.skip("this filesystem keeps pages cached after POSIX_FADV_DONTNEED")
    repo = Repository.init(LocalBackend(tmp_path / "repo"), b"pw", kdf=TEST_PARAMS, cache=ObjectCache(None),
                           params=RepoParams(pack_size=4 << 20))
    try:
        run_backup(repo, str(img), BackupOptions(direct_io=True))
        assert _resident_fraction(img) < 0.1  # only the partition-table probe went through the cache
        _evict(img)
        run_backup(repo, str(img), BackupOptions(direct_io=False, force_read=True))  # unchanged: read anyway
        assert _resident_fraction(img) > 0.9
        first, second = repo.list_snapshots()
        assert first.digest == second.digest and first.chunk_list == second.chunk_list
    finally:
        repo.close()


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path):
    import os

    from agent.errors import SourceError

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match="neither a block device nor a regular file"):
        open_source(str(fifo))
