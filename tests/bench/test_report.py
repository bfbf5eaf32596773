"""The generated benchmark page: a column per tool, targets against restic 0.18 (restore limit
0.45x, day0 backup 0.3x), restores said to be verified the way they were, and result files
from before restic 0.18 joined still read as restic 0.14."""

from __future__ import annotations

import json

from bench import report

GIB4 = 4 * 2**30


def _step(tool: str, step: str, wall: float, **extra) -> dict:
    rec = {"round": 1, "tool": tool, "step": step, "rc": 0, "wall_s": wall, "cpu_s": wall, "peak_rss_kib": 90_000,
           "repo_bytes": 1_000_000_000, "added_bytes": 10_000_000, "repo_files": 10}
    if step.startswith("restore"):
        rec.update(restored_alloc=2 * 2**30, original_alloc=2 * 2**30, apparent=GIB4, verified=True)
    return rec | extra


def _results(walls: dict[str, float], restic_name: str = "restic-0.18") -> dict:
    steps = [_step(t, s, w) for s in report.STEPS for t, w in walls.items()]
    steps = [s | {"tool": restic_name} if s["tool"] == "restic-0.18" else s for s in steps]
    return {"meta": {"rounds": 1, "tools": list(walls), "machine": {"versions": {}}}, "steps": steps}


def _row(page: str, start: str) -> list[str]:
    line = next(x for x in page.splitlines() if x.startswith(f"| {start} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_restore_target_is_045_of_restic_018():
    # the agent restores in 0.46 of restic 0.18's time: under the old 0.5x limit, over 0.45x
    steps = _results({"agent": 4.6, "restic-0.18": 10.0, "restic-0.14": 20.0, "borg": 30.0})["steps"]
    rows = {name: (val, limit, met) for name, val, limit, met in report.targets(steps)}
    assert rows["restore day3 wall (and sparse: yes)"] == ("0.46x", "<= 0.45x", False)
    # day0 backups skip free space: 0.3x restic 0.18 at most
    assert rows["day0 backup wall"] == ("0.46x", "<= 0.3x", False)


def test_page_has_a_column_per_tool_and_ratios_against_both_restics():
    page = report.render(_results({"agent": 2.0, "restic-0.18": 4.0, "restic-0.14": 8.0, "borg": 10.0}), "",
                         "img/x.png")
    head = next(x for x in page.splitlines() if x.startswith("| step |"))
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "step", "agent", "restic 0.18", "restic 0.14", "borg", "`cat` floor",
        "agent/restic 0.18", "agent/restic 0.14", "agent/borg"]
    assert _row(page, "backup day1")[-3:] == ["0.50x", "0.25x", "0.20x"]
    assert "## Targets against restic 0.18" in page
    assert _row(page, "day0 backup wall") == ["day0 backup wall", "<= 0.3x", "0.50x", "**no**", "0.25x"]
    assert "`restore ID --target DIR --sparse`" in page


def test_restores_say_how_they_were_verified():
    results = _results({"agent": 2.0, "restic-0.18": 4.0, "restic-0.14": 8.0, "borg": 10.0})
    for s in results["steps"]:
        if s["step"].startswith("restore"):
            s["verify_detail"] = ("filesystems and files: p1 vfat: checker clean" if s["tool"] == "agent"
                                  else "byte-identical")
    page = report.render(results, "", "img/x.png")
    line = next(x for x in page.splitlines() if x.startswith("| day3 | agent |"))
    assert line.rstrip(" |").endswith("fsck + every file")
    line = next(x for x in page.splitlines() if x.startswith("| day3 | restic 0.18 |"))
    assert line.rstrip(" |").endswith("byte for byte")


def test_results_from_before_restic_018_read_as_restic_014(tmp_path):
    path = tmp_path / "old.json"
    doc = _results({"agent": 2.0, "restic-0.18": 8.0, "borg": 10.0}, restic_name="restic")
    doc["meta"]["machine"]["versions"] = {"restic": "restic 0.14.0 compiled with go1.19.8 on linux/amd64"}
    path.write_text(json.dumps(doc))
    results = report.load(path)
    assert {s["tool"] for s in results["steps"]} == {"agent", "restic-0.14", "borg"}
    page = report.render(results, "", "img/x.png")
    assert _row(page, "backup day1")[1:5] == ["2.0", "–", "8.0", "10.0"]
    assert _row(page, "day1 incremental wall")[2:] == ["–", "–", "0.25x"]
    assert "restic 0.18: not measured; restic 0.14.0 compiled with go1.19.8" in page


def test_manual_sections_survive_a_regeneration():
    results = _results({"agent": 2.0, "restic-0.18": 4.0, "restic-0.14": 8.0, "borg": 10.0})
    first = report.render(results, "", "img/x.png")
    edited = first.replace(f"<!-- manual:sweep -->\n{report.PLACEHOLDER}",
                           "<!-- manual:sweep -->\nhand-written | with a table")
    assert "hand-written | with a table" in report.render(results, edited, "img/x.png")
