"""`agent prune --unfinished`: the uploads of a backup that never finished are kept by default (the
next run resumes from them) and reclaimed on request, without touching what a snapshot uses."""

from __future__ import annotations

import os
from pathlib import Path

MiB = 1 << 20


def _packs(repo: Path) -> set[str]:
    return {p.name for p in (repo / "data").rglob("*") if p.is_file()}


def test_prune_unfinished_reclaims_the_uploads_of_a_run_that_never_finished(cli, tmp_path):
    kept_img, lost_img = tmp_path / "kept.img", tmp_path / "lost.img"
    kept_img.write_bytes(os.urandom(2 * MiB))
    lost_img.write_bytes(os.urandom(24 * MiB))
    cli("init", "--pack-size", "1")
    cli("backup", str(kept_img))
    packs_of_the_snapshot = _packs(cli.repo)

    first = cli("backup", str(lost_img), "--limit-upload", "4MiB/s", "--max-duration", "2s", "--json", check=False)
    assert first.code == 3 and first.json()["uploaded_bytes"] > 0, first.err  # a first backup that never finished
    assert len(cli("snapshots", "--all", "--json").json()["snapshots"]) == 2
    uploaded = _packs(cli.repo) - packs_of_the_snapshot
    assert uploaded

    plain = cli("prune", "--json").json()  # the next run would resume: nothing is deleted
    assert plain["packs_deleted"] == 0 and plain["runs_dropped"] == 0
    assert _packs(cli.repo) >= uploaded

    dry = cli("prune", "--unfinished", "--dry-run", "--json").json()
    assert dry["runs_dropped"] == 1 and dry["packs_deleted"] >= len(uploaded)
    assert _packs(cli.repo) >= uploaded

    res = cli("prune", "--unfinished")
    assert "dropped 1 record(s) of unfinished backup runs" in res.out
    assert not _packs(cli.repo) & uploaded and _packs(cli.repo) >= packs_of_the_snapshot
    assert [r["status"] for r in cli("snapshots", "--all", "--json").json()["snapshots"]] == ["complete"]
    assert cli("check", "--read-data").code == 0
    cli("restore", "latest", "--to", str(tmp_path / "out.img"))
    assert (tmp_path / "out.img").read_bytes() == kept_img.read_bytes()
