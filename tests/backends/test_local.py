import os

import pytest

from backends.base import PutMode
from backends.errors import AlreadyExists
from backends.local import LocalBackend
from tests.backends.conformance import Conformance


class TestLocalBackend(Conformance):
    large_object_size = 1 << 20

    @pytest.fixture
    def backend(self, tmp_path):
        return LocalBackend(tmp_path / "repo")


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
