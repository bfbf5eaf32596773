"""The end-to-end cycle every remote backend goes through (tests/e2e/test_backends.py, test_drives.py):
init, back up a GPT disk on two days, restore each day with --at byte for byte, check --read-data clean,
and confirm on the server itself that the repository objects landed there."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.diskimage import MissingTool, build_sample_image, change_image, copy_sparse

DAY0, DAY1 = "2024-05-01T12:00:00Z", "2024-05-02T12:00:00Z"


@dataclass
class Target:
    url: str
    stored: Callable[[], set[str]]  # the repository's object names, as the server sees them
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Days:
    day0: Path
    day1: Path


def make_days(tmp: Path, size_mib: int) -> Days:
    """Two versions of one small disk: the second is the first after a day of use."""
    try:
        info = build_sample_image(tmp / "day0.img", size_mib=size_mib, esp_mib=4)
        shutil.copyfile(tmp / "day0.img", tmp / "day1.img")
        change_image(tmp / "day1.img", info)
    except MissingTool as exc:
        pytest.skip(str(exc))
    return Days(tmp / "day0.img", tmp / "day1.img")


def run_cycle(cli, days: Days, target: Target, tmp_path: Path) -> None:
    cli.env.update(target.env, AGENT_REPO=target.url)
    disk = tmp_path / "disk.img"  # one source path for both days, so --at chooses among them
    size = days.day0.stat().st_size
    cli("init")
    assert target.stored() >= {"config"}  # on the server, not somewhere local
    copy_sparse(days.day0, disk, 0, length=size)
    first = cli("backup", str(disk), "--time", DAY0, "--json").json()
    disk.unlink()
    copy_sparse(days.day1, disk, 0, length=size)
    second = cli("backup", str(disk), "--time", DAY1, "--json").json()
    # the second day stores its changes and deduplicates the rest against the first; on a disk this
    # small one day's edits can touch as many bytes as the first backup stored, so count chunks
    assert second["new_bytes"] > 0 and 0 < second["new_chunks"] < second["chunks"], (first, second)

    cli("restore", "--at", "2024-05-01", "--to", str(tmp_path / "r0.img"))
    cli("restore", "--at", "2024-05-02", "--to", str(tmp_path / "r1.img"))
    assert (tmp_path / "r0.img").read_bytes() == days.day0.read_bytes()
    assert (tmp_path / "r1.img").read_bytes() == days.day1.read_bytes()

    report = cli("check", "--read-data", "--json").json()
    assert report["ok"] and not report["errors"] and not report["damaged_packs"]
    assert report["snapshots"] == 2 and report["packs_read"] == report["packs"] > 0

    stored = target.stored()
    assert {n.split("/")[0] for n in stored} >= {"config", "keys", "data", "index", "snapshots"}
    assert sum(n.startswith("snapshots/") for n in stored) == 2
