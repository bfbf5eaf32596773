"""Format compatibility: today's code must still read the golden repository written by an earlier one.

tests/repo/golden/repo/ was written once by tests/repo/golden/make.py (three nights backed up, a
second key added, one snapshot forgotten and pruned) and is checked in with manifest.json, which
records what it must list and restore to. These tests open a copy of it with each of its two
passphrases through the command line only (`python -m agent`, no agent.* imports): listing, keys,
byte-for-byte restores, `check --read-data`, and refusal of a wrong passphrase.

If a format change breaks them, do not regenerate the golden repository: keep it readable, or add
a migration and a new golden repository next to this one (tests/repo/golden/README.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]  # the checkout whose `agent` is under test
GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
PASSPHRASES = ["passphrase-1", "passphrase-2"]
LISTED = ("id", "short_id", "time", "host", "source", "size", "tags", "parent")  # fields of `snapshots --json`


def _tree_digest(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*")) if p.is_file()}


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()


@pytest.fixture(scope="module", autouse=True)
def checked_in_repository_unchanged():
    """The checked-in repository is only ever copied, never opened in place."""
    before = _tree_digest(GOLDEN / "repo")
    assert before, "the golden repository is missing"
    yield
    assert _tree_digest(GOLDEN / "repo") == before, "a test modified the checked-in golden repository"


class Agent:
    """`python -m agent` from this checkout, on a private copy of the golden repository and a fresh cache."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.repo = tmp / "repo"
        shutil.copytree(GOLDEN / "repo", self.repo)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        self.env.update(AGENT_REPO=str(self.repo), AGENT_CACHE_DIR=str(tmp / "cache"), PYTHONPATH=str(ROOT))

    def run(self, passfile: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**self.env, "AGENT_PASSPHRASE_FILE": str(passfile)}, timeout=120)

    def ok(self, passfile: Path, *args: str) -> subprocess.CompletedProcess:
        proc = self.run(passfile, *args)
        assert proc.returncode == 0, f"agent {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def json(self, passfile: Path, *args: str):
        """The result line: the last line of stdout (progress events may come before it)."""
        return json.loads(self.ok(passfile, *args, "--json").stdout.strip().splitlines()[-1])


@pytest.fixture
def agent(tmp_path) -> Agent:
    return Agent(tmp_path)


@pytest.fixture(params=PASSPHRASES)
def passfile(request) -> Path:
    return GOLDEN / request.param


def test_manifest_describes_a_repository_with_history():
    """The golden repository exercises more than one snapshot, key and pack, and a prune that rewrote data."""
    assert len(MANIFEST["snapshots"]) >= 2
    assert MANIFEST["keys"]["count"] == len(PASSPHRASES) == 2
    assert MANIFEST["packs"] >= 2
    assert MANIFEST["prune"]["packs_deleted"] + MANIFEST["prune"]["packs_repacked"] >= 1
    assert MANIFEST["forgotten"]["id"] not in {s["id"] for s in MANIFEST["snapshots"]}


def test_lists_exactly_the_manifest_snapshots(agent, passfile):
    listed = agent.json(passfile, "snapshots")["snapshots"]
    assert [{k: s[k] for k in LISTED} for s in listed] == [{k: s[k] for k in LISTED} for s in MANIFEST["snapshots"]]


def test_lists_both_keys_and_marks_the_one_that_opened(agent, passfile):
    keys = agent.json(passfile, "key", "list")["keys"]
    assert len(keys) == MANIFEST["keys"]["count"] == 2
    assert {k["id"]: k["label"] for k in keys} == MANIFEST["keys"]["labels"]
    assert [k["id"] for k in keys if k["current"]] == [MANIFEST["keys"]["by_passphrase"][passfile.name]]


def test_every_snapshot_restores_byte_for_byte(agent, passfile, tmp_path):
    for snap in MANIFEST["snapshots"]:
        target = tmp_path / f"{snap['short_id']}.img"
        agent.ok(passfile, "restore", snap["id"], "--to", str(target))
        assert target.stat().st_size == snap["size"]
        assert _file_sha256(target) == snap["image_sha256"], f"snapshot {snap['short_id']} restored different bytes"


def test_latest_and_at_pick_the_snapshots_the_manifest_implies(agent, passfile, tmp_path):
    by_time = sorted(MANIFEST["snapshots"], key=lambda s: s["time"])
    agent.ok(passfile, "restore", "latest", "--to", str(tmp_path / "latest.img"))
    assert _file_sha256(tmp_path / "latest.img") == by_time[-1]["image_sha256"]
    # at the forgotten snapshot's time: the newest remaining one at or before it (times are ISO UTC: sortable)
    at = MANIFEST["forgotten"]["time"]
    expected = [s for s in by_time if s["time"] <= at][-1]
    agent.ok(passfile, "restore", "--at", at, "--to", str(tmp_path / "at.img"))
    assert _file_sha256(tmp_path / "at.img") == expected["image_sha256"]
    assert expected["image_sha256"] != MANIFEST["forgotten"]["image_sha256"]


def test_check_read_data_finds_no_errors(agent, passfile):
    rep = agent.json(passfile, "check", "--read-data")
    assert rep["ok"] is True
    assert rep["errors"] == [] and rep["damaged_packs"] == {} and rep["affected_snapshots"] == {}
    assert rep["snapshots"] == len(MANIFEST["snapshots"])
    assert rep["packs"] == rep["packs_read"] == MANIFEST["packs"]
    assert rep["chunks"] == MANIFEST["chunks"]


def test_a_wrong_passphrase_is_refused(agent, tmp_path):
    wrong = tmp_path / "wrong-passphrase"
    wrong.write_text((GOLDEN / "passphrase-1").read_text().strip() + " but not quite\n")
    proc = agent.run(wrong, "snapshots", "--json")
    assert proc.returncode != 0
    assert "wrong passphrase" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    assert MANIFEST["snapshots"][0]["id"] not in proc.stdout
