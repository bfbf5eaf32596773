"""What the progress display and the backup summary say: binary units, what a restore does (not
"new 0 B · up 0 B"), an ETA from the recent rate, and no "dedup" ratio on a backup that had nothing
to deduplicate against."""

from __future__ import annotations

import io
import os
import re

from rich.console import Console

from agent.cli.progress_view import _Tally, rich_bar
from agent.progress import Advanced, Started

MiB, GiB = 1 << 20, 1 << 30
DECIMAL = re.compile(r"\d ?(kB|MB|GB|TB)\b")  # rich's default units: 1.6 GB, 26.0 MB/s


def _render(operation: str, total: int, done: int) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200, color_system=None)
    with rich_bar(operation, console, lambda m: None) as listener:
        listener(Started(operation, total))
        listener(Advanced(done, new_bytes=done // 4, stored_bytes=done // 8))
    return out.getvalue()


def test_the_restore_bar_shows_binary_units_and_no_backup_columns():
    text = _render("restore", 3 * GiB, int(1.5 * GiB))
    assert "1.5/3.0 GiB" in text, text
    assert "new " not in text and "up " not in text, text
    assert not DECIMAL.search(text), text


def test_the_backup_bar_shows_new_and_uploaded_in_binary_units():
    text = _render("backup", 3 * GiB, int(1.5 * GiB))
    assert "new 384.0 MiB · up 192.0 MiB" in text, text
    assert not DECIMAL.search(text), text


def test_the_eta_follows_the_recent_rate_not_the_average_since_the_start():
    """100 s at 0.5 MiB/s (a cold start), then 20 s at 10 MiB/s: 50 MiB left take 5 s, not the 24 s
    the average since the start (2.1 MiB/s) predicts."""
    tally = _Tally("restore", 0.0)
    tally.update(Started("restore", 300 * MiB), now=0.0)
    t, done = 0.0, 0
    while t < 100:
        t, done = t + 1, done + MiB // 2
        tally.update(Advanced(done), now=t)
    while t < 120:
        t, done = t + 1, done + 10 * MiB
        tally.update(Advanced(done), now=t)
    assert done == 250 * MiB
    assert abs(tally.rate(now=t) - 10 * MiB) < MiB / 10
    eta = tally.eta_s(now=t)
    assert eta is not None and 4.5 <= eta <= 5.5, eta
    assert "new" not in tally.line() and "uploaded" not in tally.line()  # a restore neither finds nor uploads


def test_a_first_backup_summary_does_not_call_its_ratio_dedup(cli, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(MiB) + bytes(15 * MiB) + b"repeat" * (MiB // 6))
    cli("init")
    out = cli("backup", str(img)).out
    assert "dedup" not in out, out
    assert re.search(r"\(stored at 1/\d+\.\d of the image size\)", out), out
