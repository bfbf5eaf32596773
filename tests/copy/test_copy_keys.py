"""`agent copy` between repositories with different keys, the same keys, a wrong target passphrase,
and a target that cuts disks differently (plain `agent init`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent.copy.fetch import _GAP, _MAX_READ, Want, read_groups
from agent.repo.index import Location
from tests.copy.conftest import back_up


def _setup(cli, nights, tmp_path, count: int = 2):
    disk = tmp_path / "disk.img"
    cli("init", "--pack-size", "1")
    for i in range(count):
        back_up(cli, nights, disk, i)
    pw = tmp_path / "b-passphrase"
    pw.write_text("another passphrase\n")
    cli.env.update(AGENT_TO_PASSPHRASE_FILE=str(pw), AGENT_FROM_PASSPHRASE_FILE=str(cli.passfile))
    return tmp_path / "b", ["--repo", str(tmp_path / "b"), "--passphrase-file", str(pw)]


def _restore_latest(cli, on_b, nights, tmp_path, night: int) -> None:
    out = tmp_path / "out.img"
    cli(*on_b, "restore", "latest", "--to", str(out), "--force")
    assert out.read_bytes() == nights[night].read_bytes()


def test_wrong_target_passphrase_is_one_clear_line(cli, nights, tmp_path):
    b, on_b = _setup(cli, nights, tmp_path, 1)
    cli(*on_b, "init", "--from-repo", str(cli.repo))
    bad = tmp_path / "wrong"
    bad.write_text("not it\n")
    res = cli("copy", "--to-repo", str(b), "--to-passphrase-file", str(bad), check=False)
    assert res.code == 11 and "Traceback" not in res.err
    assert f"error: repository {b}: target repository passphrase: wrong passphrase" in res.err, res.err
    assert "not it" not in res.err
    assert cli(*on_b, "snapshots", "--json").json()["snapshots"] == []  # nothing was written


def test_other_chunker_parameters_work_but_say_dedup_is_lost(cli, nights, tmp_path):
    b, on_b = _setup(cli, nights, tmp_path)
    cli(*on_b, "init")  # its own seed: cuts the disk elsewhere
    res = cli("copy", "--to-repo", str(b), "--json")
    assert "will not deduplicate" in res.err
    summary = res.json()
    assert summary["dedup_lost"] and summary["snapshots_copied"] == 2
    _restore_latest(cli, on_b, nights, tmp_path, 1)
    check = cli(*on_b, "check", "--read-data", "--json").json()
    assert check["ok"] and check["snapshots"] == 2


def test_from_repo_with_own_keys_dedups_a_direct_backup_against_copies(cli, nights, tmp_path):
    b, on_b = _setup(cli, nights, tmp_path)
    cli(*on_b, "init", "--from-repo", str(cli.repo))
    res = cli("copy", "--to-repo", str(b), "--json").json()
    assert res["mode"] == "reseal" and not res["dedup_lost"] and res["whole_packs"] == 0
    # a backup made straight into B cuts where A did: only the night's changes are new
    disk = tmp_path / "disk.img"
    direct = back_up(lambda *a: cli(*on_b, *a), nights, disk, 2)
    fresh_in_a = back_up(cli, nights, disk, 2)
    assert direct["new_bytes"] <= 1.05 * fresh_in_a["new_bytes"] + (64 << 10), (direct, fresh_in_a)
    _restore_latest(cli, on_b, nights, tmp_path, 2)


def test_shared_keys_copy_ids_and_packs_as_they_are(cli, nights, tmp_path):
    b, on_b = _setup(cli, nights, tmp_path)
    cli(*on_b, "init", "--from-repo", str(cli.repo), "--share-keys")
    a_ids = [s["id"] for s in cli("snapshots", "--json").json()["snapshots"]]
    res = cli("copy", "--to-repo", str(b), "--json").json()
    assert res["mode"] == "replica" and res["whole_packs"] > 0
    assert [s["id"] for s in cli(*on_b, "snapshots", "--json").json()["snapshots"]] == a_ids
    a_packs = {p.name for p in (cli.repo / "data").rglob("*") if p.is_file()}
    b_packs = {p.name for p in (b / "data").rglob("*") if p.is_file()}
    assert b_packs <= a_packs and len(b_packs) >= res["whole_packs"]
    _restore_latest(cli, on_b, nights, tmp_path, 1)


def test_selection_by_id_and_at(cli, nights, tmp_path):
    b, on_b = _setup(cli, nights, tmp_path)
    cli(*on_b, "init", "--from-repo", str(cli.repo))
    first = cli("snapshots", "--json").json()["snapshots"][0]["id"]
    res = cli("copy", "--to-repo", str(b), first[:8], "--json").json()
    assert [c["source_id"] for c in res["copied"]] == [first]
    res = cli("copy", "--to-repo", str(b), "--at", "2024-05-01", "--json").json()
    assert res["snapshots_copied"] == 0 and res["skipped"] == [first]
    missing = cli("copy", "--to-repo", str(b), "--host", "nobody", "--at", "2024-05-01", check=False)
    assert missing.code == 18 and "Traceback" not in missing.err


_wants = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 64 << 20), st.integers(1, 5 << 20)), max_size=60)


@given(_wants)
def test_read_groups_cover_each_blob_once_within_one_pack_and_bounds(specs):
    wants = [Want(i.to_bytes(32, "big"), Location(f"p{p}", 1, off, n, n)) for i, (p, off, n) in enumerate(specs)]
    groups = read_groups(wants)
    assert sorted(w.cid for g in groups for w in g) == sorted(w.cid for w in wants)
    for g in groups:
        assert len({w.loc.pack_id for w in g}) == 1
        assert [w.loc.offset for w in g] == sorted(w.loc.offset for w in g)
        span = g[-1].loc.offset + g[-1].loc.length - g[0].loc.offset
        assert len(g) == 1 or span <= _MAX_READ
        for a, b in zip(g, g[1:]):
            assert b.loc.offset - (a.loc.offset + a.loc.length) <= _GAP
