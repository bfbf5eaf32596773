"""`latest` and `--at` choose among one host and source: never another machine's disk."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture
def two_machines(cli, tmp_path):
    """A repository holding disk.img of this machine and of another one, the other's newest."""
    cli("init")
    mine, theirs = tmp_path / "mine.img", tmp_path / "theirs.img"
    mine.write_bytes(os.urandom(1 << 20))
    theirs.write_bytes(os.urandom(1 << 20))
    disk = tmp_path / "disk.img"
    disk.write_bytes(mine.read_bytes())
    cli("backup", str(disk), "--host", "other-machine", "--time", "2024-01-01T00:00:00Z")
    cli("backup", str(disk), "--host", "far-away", "--time", "2024-01-02T00:00:00Z")
    disk.write_bytes(theirs.read_bytes())
    cli("backup", str(disk), "--host", "far-away", "--time", "2024-01-03T00:00:00Z")
    return disk, mine, theirs


@pytest.mark.parametrize("choose", [("latest",), ("--at", "now")])
def test_several_machines_require_host_and_source(cli, tmp_path, two_machines, choose):
    res = cli("restore", *choose, "--to", str(tmp_path / "out.img"), check=False)
    assert res.code == 2, res
    assert "several machines or sources match" in res.err and "far-away:" in res.err and "other-machine:" in res.err
    assert "choose with --host and --source" in res.err
    assert not (tmp_path / "out.img").exists()
    for command in (("verify", *choose), ("ls", "latest:/") if choose == ("latest",) else ("ls", *choose, "/")):
        res = cli(*command, check=False)
        assert res.code == 2 and "several machines or sources match" in res.err, (command, res)


def test_host_chooses_and_the_local_host_is_inferred(cli, tmp_path, two_machines):
    disk, mine, theirs = two_machines
    out = tmp_path / "out.img"
    cli("restore", "latest", "--host", "other-machine", "--to", str(out))
    assert out.read_bytes() == mine.read_bytes()
    # this machine's own backups: its hostname among the hosts picks them without --host
    cli("backup", str(disk), "--host", socket.gethostname(), "--time", "2023-06-01T00:00:00Z")
    cli("restore", "latest", "--to", str(out), "--force")
    assert out.read_bytes() == theirs.read_bytes()
    cli("restore", "--at", "2023-12-01", "--to", str(out), "--force")
    assert out.read_bytes() == theirs.read_bytes()
    # the config's host is this machine's name when it sets one
    cfg = tmp_path / "agent.toml"
    cfg.write_text('host = "other-machine"\n')
    cfg.chmod(0o600)
    cli("--config", str(cfg), "restore", "latest", "--to", str(out), "--force")
    assert out.read_bytes() == mine.read_bytes()


def test_several_sources_of_the_local_host_still_need_source(cli, tmp_path):
    cli("init")
    for name in ("a.img", "b.img"):
        (tmp_path / name).write_bytes(os.urandom(1 << 20))
        cli("backup", str(tmp_path / name))
    res = cli("restore", "latest", "--to", str(tmp_path / "out.img"), check=False)
    assert res.code == 2 and "a.img" in res.err and "b.img" in res.err
    cli("restore", "latest", "--source", str(tmp_path / "b.img"), "--to", str(tmp_path / "out.img"))
    assert (tmp_path / "out.img").read_bytes() == (tmp_path / "b.img").read_bytes()
