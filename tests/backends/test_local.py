import os

import pytest

from backends.base import PutMode
from backends.errors import AlreadyExists
from backends.local import LocalBackend
from tests.backends.conformance import Conformance, plant_temp_file


class TestLocalBackend(Conformance):
    large_object_size = 1 << 20

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(tmp_path / "repo")

    @pytest.fixture
    def leave_leftover(self, tmp_path):
        return lambda key, data, age=0.0: plant_temp_file(tmp_path / "repo", key, data, age)


def test_temp_files_hidden_from_list(tmp_path):
    be = LocalBackend(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / ".tmp-half-written.abc").write_bytes(b"partial")
    be.put("data/whole", b"x")
    assert [i.key for i in be.list("data/")] == ["data/whole"]


def test_objects_not_world_readable(tmp_path):
    be = LocalBackend(tmp_path)
    be.put("keys/k", b"secret-ish")
    assert os.stat(tmp_path / "keys" / "k").st_mode & 0o077 == 0


def test_create_race_has_one_winner(tmp_path):
    be = LocalBackend(tmp_path)
    be.put("lock", b"a", mode=PutMode.CREATE)
    with pytest.raises(AlreadyExists):
        be.put("lock", b"b", mode=PutMode.CREATE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_directories_are_private_whatever_the_umask(tmp_path):
    import os
    import stat

    from backends.local import LocalBackend

    old = os.umask(0o022)
    try:
        b = LocalBackend(tmp_path / "nas" / "repo")
        b.put("data/ab/" + "ab" * 32, b"x")
        b.put("config", b"y")
    finally:
        os.umask(old)
    for d in (tmp_path / "nas" / "repo", tmp_path / "nas" / "repo" / "data", tmp_path / "nas" / "repo" / "data" / "ab"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE((tmp_path / "nas" / "repo" / "config").stat().st_mode) == 0o600


def test_the_first_write_creates_a_missing_root_privately(tmp_path):
    import stat

    from backends.local import LocalBackend

    b = LocalBackend(tmp_path / "new" / "repo", create=False)  # as opened from a URL by `agent init`
    b.put("keys/" + "ab" * 16, b"k")
    assert (tmp_path / "new" / "repo" / "keys" / ("ab" * 16)).read_bytes() == b"k"
    assert stat.S_IMODE((tmp_path / "new" / "repo").stat().st_mode) == 0o700


def test_a_ranged_read_leaves_its_pages_out_of_the_page_cache(tmp_path):
    """A part of a pack is read once (restore, copy): its pages are dropped after the read. A whole
    object (a key, an index segment) stays cached."""
    from tests.source.cache_helpers import evict, resident_fraction

    be = LocalBackend(tmp_path / "repo")
    data = os.urandom(4 << 20)
    be.put("data/ab/pack", data)
    path = tmp_path / "repo" / "data" / "ab" / "pack"
    evict(path)
    if resident_fraction(path) > 0.1:
        pytest.skip("this filesystem keeps pages cached after POSIX_FADV_DONTNEED")
    assert be.get("data/ab/pack", offset=0, length=4 << 20) == data
    assert resident_fraction(path) < 0.1
    assert be.get("data/ab/pack", offset=1000, length=5000) == data[1000:6000]
    assert resident_fraction(path) < 0.1
    assert be.get("data/ab/pack") == data
    assert resident_fraction(path) > 0.9
