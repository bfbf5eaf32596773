"""When a night counts as suspicious (agent.backup.suspicion): each threshold on its own, and
`agent backup` by hand on a real image file: a big night of text is ordinary, a big night of random
bytes is flagged (exit 7, a warning naming the snapshot kept)."""

from __future__ import annotations

import os
import random

from agent.backup.suspicion import Thresholds, describe, evaluate, recent_nights
from agent.repo.snapshots import Snapshot

MIB = 1 << 20
T = Thresholds(min_new_bytes=10 * MIB)


def test_far_above_usual_and_incompressible_is_flagged_with_what_was_measured():
    note = evaluate([2 * MIB, 3 * MIB, 2 * MIB, 40 * MIB], 50 * MIB, 50 * MIB, 49 * MIB, T)
    assert note is not None
    assert note["usual_bytes"] == int(2.5 * MIB) and note["nights"] == 4 and note["factor"] == 20.0
    assert note["stored_ratio"] == 0.98 and note["thresholds"]["min_new_bytes"] == 10 * MIB
    assert describe(note).startswith("new data 50.0 MiB, 20x the usual 2.5 MiB (median of 4 nights), 98%")


def test_each_threshold_alone_keeps_a_night_ordinary():
    usual = [2 * MIB] * 5
    assert evaluate(usual, 50 * MIB, 50 * MIB, 25 * MIB, T) is None       # compresses to half: an update
    assert evaluate(usual, 9 * MIB, 9 * MIB, 9 * MIB, T) is None          # above 4x usual but under the floor
    assert evaluate(usual, 10 * MIB, 10 * MIB, 10 * MIB, T.override(factor=6)) is None  # 5x, not above 6x
    assert evaluate(usual[:2], 50 * MIB, 50 * MIB, 50 * MIB, T) is None   # two nights are no history yet
    assert evaluate(usual, 50 * MIB, 50 * MIB, 50 * MIB, T.override(enabled=False)) is None
    assert evaluate(usual[:2], 50 * MIB, 50 * MIB, 50 * MIB, T.override(min_history=2)) is not None


def test_the_usual_is_the_median_of_the_last_history_nights():
    old_big = [100 * MIB] * 10 + [MIB] * 3
    assert evaluate(old_big, 20 * MIB, 20 * MIB, 20 * MIB, T.override(history=3)) is not None
    assert evaluate(old_big, 20 * MIB, 20 * MIB, 20 * MIB, T.override(history=13)) is None


def _snap(day: int, new: int, parent: bool = True, carried: list[int] | None = None) -> Snapshot:
    from datetime import UTC, datetime

    stats = {"new_bytes": new} | ({"recent_nights": carried} if carried is not None else {})
    return Snapshot(time=datetime(2024, 3, day, tzinfo=UTC), host="h", source={"path": "/x"}, size=0, digest="",
                    chunk_list=[], parent="p" if parent else None, stats=stats)


def test_history_comes_from_the_newest_snapshot_so_retention_does_not_shorten_it():
    # the first backup (no parent) is the whole disk, no night's change: left out
    assert recent_nights([_snap(1, 900, parent=False), _snap(2, 5), _snap(3, 7)]) == [5, 7]
    # a snapshot that carries the nights wins over the (forgotten) snapshots themselves
    assert recent_nights([_snap(9, 5, carried=[1, 2, 3, 4, 5])]) == [1, 2, 3, 4, 5]


def test_agent_backup_by_hand_flags_random_but_not_text_and_says_what_is_kept(tmp_path, cli):
    rng = random.Random(3)
    img = tmp_path / "disk.img"
    words = [f"word{i}" for i in range(300)]
    img.write_bytes((" ".join(rng.choices(words, k=3 * MIB)) + "\n").encode()[:12 * MIB])

    def overwrite(offset: int, data: bytes) -> None:
        with open(img, "r+b") as f:
            os.pwrite(f.fileno(), data, offset)

    def backup(day: int):
        return cli("backup", "--json", str(img), "--time", f"2024-03-0{day}T01:00", "--suspicious-min-new", "1MiB",
                   check=False)

    cli("init")
    for day in range(1, 5):  # a first backup, then three quiet nights
        if day > 1:
            overwrite(day * MIB, (" ".join(rng.choices(words, k=20000))).encode()[:64 << 10])
        assert backup(day).code == 0
    overwrite(0, (" ".join(rng.choices(words, k=MIB))).encode()[:4 * MIB])  # a big night of text
    res = backup(5)
    assert res.code == 0 and res.json()["suspicious"] is None, res.out
    night5 = res.json()["snapshot_id"]
    overwrite(6 * MIB, rng.randbytes(4 * MIB))  # a big night of random bytes
    res = cli("backup", str(img), "--time", "2024-03-06T01:00", "--suspicious-min-new", "1MiB", check=False)
    assert res.code == 7, res.out + res.err
    assert "SUSPICIOUS night" in res.err and f"snapshot {night5[:8]} (the last before it) is kept" in res.err
    assert "Traceback" not in res.err
    res = cli("backup", str(img), "--suspicious-min-new", "lots", check=False)
    assert res.code == 2 and "cannot read the size 'lots'" in res.err
