"""A damaged `config`, at any byte: a typed error that never sends the user to `agent init`."""

from __future__ import annotations

import os

import pytest

from agent.errors import AgentError, CorruptObject, RepositoryNotFound
from agent.repo.format import RepoParams, encode_config, open_config, read_plain_config

KEY = os.urandom(32)
RAW = encode_config("ab" * 16, RepoParams(), KEY, "2024-05-01T00:00:00+00:00")


def _open(raw: bytes) -> RepoParams:
    return open_config(read_plain_config(raw), KEY)


def test_intact_config_opens():
    assert _open(RAW) == RepoParams()


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_every_position(how):
    for pos in range(len(RAW)):
        if how == "flip":
            damaged = bytearray(RAW)
            damaged[pos] ^= 0x01
            raw = bytes(damaged)
        else:
            raw = RAW[:pos]
        try:
            params = _open(raw)
        except RepositoryNotFound as exc:
            assert b"agent-repository" not in raw, (pos, exc)  # ours, but damaged: never "not a repository"
            assert "agent init" not in exc.hint
        except AgentError:
            pass
        else:  # the flip landed where it changes nothing that is read (JSON whitespace, a key's case)
            assert params == RepoParams(), pos


def test_a_foreign_file_named_config_is_not_a_repository_and_a_damaged_one_is_corrupt():
    with pytest.raises(RepositoryNotFound):
        read_plain_config(b'{"some": "other tool"}')
    with pytest.raises(CorruptObject, match="damaged"):
        read_plain_config(RAW[:-3])


@pytest.mark.parametrize("damage", ["zero", "delete"])
def test_a_zeroed_or_missing_config_beside_key_files_is_damage_not_no_repository(cli, damage):
    """A NAS that lost power zero-fills the small config; a careless cleanup deletes it. With key
    files there, this is a damaged repository: say so, and never suggest `agent init`."""
    cli("init")
    config = cli.repo / "config"
    if damage == "zero":
        config.write_bytes(bytes(config.stat().st_size))
    else:
        config.unlink()
    res = cli("snapshots", check=False)
    assert res.code == 14, res
    assert "repository config is" in res.err and "restore the object 'config'" in res.err
    assert "Traceback" not in res.err
    other = cli.tmp / "elsewhere"
    other.mkdir()
    assert cli("snapshots", check=False, env={"AGENT_REPO": str(other)}).code == 10  # nothing there: no repository


def test_init_refuses_a_location_with_repository_data_but_no_config(cli, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(1 << 20))
    cli("init")
    cli("backup", str(img))
    (cli.repo / "config").unlink()
    res = cli("init", check=False)
    assert res.code == 10 and "holds repository data but no config" in res.err, res
    assert "restore the object 'config'" in res.err
    assert not (cli.repo / "config").exists()
    # a half-made repository (init killed between its key file and its config) may be initialised again
    half = tmp_path / "half"
    cli("init", env={"AGENT_REPO": str(half)})
    (half / "config").unlink()
    assert cli("init", env={"AGENT_REPO": str(half)}).code == 0
