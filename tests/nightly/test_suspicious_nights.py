"""Suspicious nights end to end (docs/suspicious-nights.md): a real ext4 image, five nights of small
edits, then a night that overwrites a third of its files with random bytes, as an encrypting
ransomware would. The run report, the webhook and the metrics flag that night; `forget` keeps the
night before it, whoever runs it, until `agent ack` with the repository key."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from tests.diskimage import MissingTool, _debugfs, _run, require_tools
from tests.servers.webhook import webhook_server

MIB = 1 << 20
FILES = 36  # of 1 MiB each: 36 MiB of text in a 64 MiB filesystem
_WORDS = [f"{w}{i}" for w in ("invoice", "report", "minutes", "budget", "letter", "draft", "contract", "notes")
          for i in range(40)]


def _text(rng: random.Random, size: int) -> bytes:
    return (" ".join(rng.choices(_WORDS, k=size // 6)) + "\n").encode()[:size]


def _build(tmp: Path, rng: random.Random) -> Path:
    """A 64 MiB bare ext4 image holding FILES text files, built by mke2fs -d."""
    tree = tmp / "tree" / "docs"
    tree.mkdir(parents=True)
    for i in range(FILES):
        (tree / f"f{i:02}.txt").write_bytes(_text(rng, MIB))
    img = tmp / "office.img"
    with open(img, "wb") as f:
        f.truncate(64 * MIB)
    _run("mke2fs", "-q", "-F", "-t", "ext4", "-L", "office", "-d", tree.parent, img)
    return img


def _blocks(img: Path, path: str) -> tuple[int, list[int]]:
    with open(img, "rb") as f:
        sb = os.pread(f.fileno(), 1024, 1024)
    return 1024 << int.from_bytes(sb[24:28], "little"), \
        [int(b) for b in _debugfs(str(img), [f"blocks {path}"]).split() if b.isdigit()]


def _small_edit(img: Path, night: int, rng: random.Random, tmp: Path) -> None:
    """A normal day: a new small document, and one block of another rewritten in place."""
    new = tmp / "new.txt"
    new.write_bytes(_text(rng, 12 << 10))
    _debugfs(str(img), [f"write {new} /docs/new{night}.txt"], write=True)
    size, blocks = _blocks(img, f"/docs/f{night:02}.txt")
    with open(img, "r+b") as f:
        os.pwrite(f.fileno(), _text(rng, size), blocks[2] * size)


def _encrypt_a_third(img: Path, rng: random.Random) -> None:
    """Every third file overwritten in place with random bytes (what encryption looks like)."""
    with open(img, "r+b") as f:
        for i in range(0, FILES, 3):
            size, blocks = _blocks(img, f"/docs/f{i:02}.txt")
            for b in blocks:
                os.pwrite(f.fileno(), rng.randbytes(size), b * size)


@pytest.fixture
def image(tmp_path):
    try:
        require_tools("mke2fs", "debugfs")
    except MissingTool as exc:
        pytest.skip(str(exc))
    rng = random.Random(7)
    return _build(tmp_path, rng), rng


def test_a_night_that_encrypts_a_third_of_the_files_is_flagged_and_the_night_before_is_kept(tmp_path, cli, image):
    img, rng = image
    prom = tmp_path / "agent.prom"
    env = {"AGENT_REPO": "", "AGENT_PASSPHRASE_FILE": "", "AGENT_STATE_DIR": str(tmp_path / "state")}
    cli("init")
    with webhook_server() as hook:
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f"""
repository = "{cli.repo}"
passphrase_file = "{cli.passfile}"

[[sources]]
name = "office"
path = "{img}"
suspicion = {{ min_new = "4MiB" }}   # the image is tiny: the default 256 MiB floor would never be reached

[retention]
keep_last = 1                         # the run's own forget must keep the night before, too
prune = true

[metrics]
textfile = "{prom}"

[notify.webhook]
url = "{hook.url}"
""")
        ids = []
        for night in range(1, 6):
            if night > 1:
                _small_edit(img, night, rng, tmp_path)
            res = cli("--config", str(cfg), "run", "--json", env=env)
            assert res.json()["status"] == "success", res.out + res.err
            ids.append(cli("snapshots", "--json").json()["snapshots"][-1]["id"])
        assert 'agent_source_suspicious{source="office"} 0.0' in prom.read_text()
        assert hook.requests == []  # ordinary nights alert nobody (notify on failure and warning)

        _encrypt_a_third(img, rng)
        res = cli("--config", str(cfg), "run", "--json", check=False, env=env)
        night5 = ids[-1]

    # the run report: a warning, with what was measured and what is kept
    assert res.code == 3, res.out + res.err
    summary = res.json()
    assert summary["status"] == "warning" and summary["exit_code"] == 3
    source = summary["sources"][0]
    sus = source["suspicious"]
    assert sus is not None, res.out
    assert sus["protected_snapshot"] == night5
    assert sus["new_bytes"] > 5 * sus["usual_bytes"] and sus["stored_ratio"] >= 0.6, sus
    assert "incompressible" in sus["message"]
    assert source["suspicious_unacknowledged"] == 1

    # the webhook: exactly one POST, for this night, carrying the flag
    assert len(hook.requests) == 1
    body = hook.requests[0].json()
    assert body["status"] == "warning" and "1 suspicious night" in body["summary"], body["summary"]
    assert body["sources"][0]["suspicious"]["protected_snapshot"] == night5

    # the metrics
    text = prom.read_text()
    assert 'agent_source_suspicious{source="office"} 1.0' in text
    assert 'agent_source_suspicious_unacknowledged{source="office"} 1.0' in text

    # the run's own retention (keep_last = 1) kept night five
    snaps = cli("snapshots", "--json").json()["snapshots"]
    night6 = snaps[-1]["id"]
    assert [s["id"] for s in snaps] == [night5, night6]
    assert snaps[-1]["suspicious"] and snaps[0]["note"].startswith("kept: last before suspicious")
    listing = cli("snapshots").out
    assert "SUSPICIOUS, not acknowledged" in listing and f"kept: last before suspicious {night6[:8]}" in listing
    status = cli("status", check=False)
    assert status.code == 6 and "suspicious" in status.out + status.err

    # by hand, too; an acknowledgement forged with storage access alone (no key) changes nothing
    forged = os.urandom(200)
    (cli.repo / "acks").mkdir(exist_ok=True)
    (cli.repo / "acks" / hashlib.sha256(forged).hexdigest()).write_bytes(forged)
    res = cli("forget", "--keep-last", "1", "--prune")
    assert "2 kept, 0 removed" in res.out and "last before suspicious" in res.out
    assert [s["id"] for s in cli("snapshots", "--json").json()["snapshots"]] == [night5, night6]

    # acknowledging needs the repository key
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    wrong.chmod(0o600)
    res = cli("ack", night6[:8], check=False, env={"AGENT_PASSPHRASE_FILE": str(wrong)})
    assert res.code == 11 and "Traceback" not in res.err
    assert "NOT acknowledged" in cli("ack").out

    res = cli("ack", night6[:8], "--note", "checked: a restore test wrote random files")
    assert f"acknowledged suspicious snapshot {night6[:8]}" in res.out
    assert "already acknowledged" in cli("ack", night6[:8]).out
    assert cli("status", check=False).code == 0
    res = cli("forget", "--keep-last", "1", "--prune")
    assert "1 kept, 1 removed" in res.out
    snaps = cli("snapshots", "--json").json()["snapshots"]
    assert [s["id"] for s in snaps] == [night6] and snaps[0]["note"] == "suspicious, acknowledged"
