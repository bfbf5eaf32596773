"""SpanReader: a local image's bytes, read past the page cache when it is cold and from it when warm."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.source.spans import SpanReader
from tests.source.cache_helpers import direct_image, evict, resident_fraction

SIZE = (6 << 20) + 777  # the tail is not a whole page


@pytest.fixture
def image(tmp_path):
    return direct_image(tmp_path, SIZE)


def _cold(path) -> None:
    evict(path)
    if resident_fraction(path) > 0.1:
        pytest.skip("this filesystem keeps pages cached after POSIX_FADV_DONTNEED")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(at=st.integers(0, SIZE), length=st.integers(0, 3 << 20), cold=st.booleans(), direct=st.booleans())
def test_any_span_reads_the_files_bytes(image, at, length, cold, direct):
    """Any offset and length, cold or cached, direct or not: exactly the file's bytes (short at its end)."""
    expected = image.read_bytes()[at:at + length]
    if cold:
        evict(image)
    fd = os.open(image, os.O_RDONLY)
    try:
        with SpanReader(fd, str(image), direct=direct) as reader:
            assert bytes(reader.read(at, length)) == expected
            if not direct:
                assert reader.direct_bytes == 0
    finally:
        os.close(fd)


def test_a_cold_image_is_read_past_the_page_cache(image):
    _cold(image)
    fd = os.open(image, os.O_RDONLY)
    try:
        with SpanReader(fd, str(image)) as reader:
            data = b"".join(bytes(reader.read(at, 1 << 20)) for at in range(0, SIZE, 1 << 20))
            assert reader.direct_bytes >= SIZE - 4096  # all but the part page at the end
    finally:
        os.close(fd)
    assert data == image.read_bytes()[:len(data)] and len(data) == SIZE
    evict(image)
    assert resident_fraction(image) < 0.1


def test_a_cached_image_is_read_from_memory(image):
    image.read_bytes()  # cached
    assert resident_fraction(image) > 0.9
    fd = os.open(image, os.O_RDONLY)
    try:
        with SpanReader(fd, str(image)) as reader:
            assert bytes(reader.read(12345, 4 << 20)) == image.read_bytes()[12345:12345 + (4 << 20)]
            assert reader.direct_bytes == 0
    finally:
        os.close(fd)


def test_bytes_written_and_not_yet_flushed_are_read_back(image):
    """A direct read of a range whose pages are dirty sees the new bytes (a restore just wrote them)."""
    _cold(image)
    new = os.urandom(5000)
    wfd = os.open(image, os.O_WRONLY)
    try:
        os.pwrite(wfd, new, (2 << 20) + 100)  # one dirty page or two in a cold 4 MiB span
        fd = os.open(image, os.O_RDONLY)
        try:
            with SpanReader(fd, str(image)) as reader:
                got = bytes(reader.read(1 << 20, 4 << 20))
                assert reader.direct_bytes > 0
        finally:
            os.close(fd)
    finally:
        os.close(wfd)
    assert got == image.read_bytes()[1 << 20:5 << 20]
    assert got[(1 << 20) + 100:(1 << 20) + 5100] == new


def test_threads_read_into_their_own_buffers(image):
    """A view stays valid until its own thread reads again, whatever other threads read."""
    _cold(image)
    whole = image.read_bytes()
    evict(image)
    fd = os.open(image, os.O_RDONLY)
    try:
        with SpanReader(fd, str(image)) as reader, ThreadPoolExecutor(4) as pool:
            def one(at: int) -> bool:
                view = reader.read(at, 700_001)
                return bytes(view) == whole[at:at + 700_001]

            assert all(pool.map(one, range(0, SIZE, 300_007)))
    finally:
        os.close(fd)
