"""Progress as an unattended run shows it: plain periodic lines when not on a terminal, JSON lines
with --json, nothing but results with --quiet."""

from __future__ import annotations

import json
import os

MiB = 1 << 20


def _image(tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(40 * MiB))
    return img


def test_plain_lines_when_not_on_a_terminal_and_silence_with_quiet(tmp_path, cli):
    img = _image(tmp_path)
    cli("init")
    res = cli("backup", str(img), "--limit-upload", "20MiB/s", env={"AGENT_PROGRESS_INTERVAL": "0.2"})
    lines = [ln for ln in res.err.splitlines() if ln.startswith("backup: ")]
    assert lines, res.err
    assert " of 40.0 MiB (" in lines[-1] and "uploaded" in lines[-1] and "MiB/s" in lines[-1]
    quiet = cli("--quiet", "backup", str(img), env={"AGENT_PROGRESS_INTERVAL": "0.01"})
    assert quiet.err == "" and "saved" in quiet.out


def test_json_lines_progress_then_one_summary(tmp_path, cli):
    img = _image(tmp_path)
    cli("init")
    res = cli("backup", str(img), "--json", "--limit-upload", "20MiB/s")
    events = [json.loads(ln) for ln in res.out.strip().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "summary" and kinds.count("summary") == 1
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done_bytes"] == 40 * MiB and progress[-1]["total_bytes"] == 40 * MiB
    assert all(a["done_bytes"] <= b["done_bytes"] for a, b in zip(progress, progress[1:]))
    assert events[-1]["uploaded_bytes"] >= 40 * MiB
