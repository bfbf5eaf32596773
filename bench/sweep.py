"""Chunk-size and compression-level sweep on the nightly images: for each setting, a fresh
repository, backups of day0..day3 (page cache dropped before each), and the repository size.

`python -m bench.sweep --data /tmp/bench-data --work /tmp/bench-work/sweep` prints a Markdown table
(and writes bench/results/sweep.json); the chosen defaults and why are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import drop_caches

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [  # (label, avg chunk KiB, zstd level)
    ("512K avg, zstd 3", 512, 3), ("512K avg, zstd 2", 512, 2), ("512K avg, zstd 1", 512, 1),
    ("256K avg, zstd 2", 256, 2), ("1M avg, zstd 2", 1024, 2),
]

_INIT = """
import sys
from agent.repo.format import ChunkerParams, RepoParams
from agent.repo.repository import Repository
from backends.registry import open_backend
avg, level = int(sys.argv[2]) << 10, int(sys.argv[3])
params = RepoParams(chunker=ChunkerParams(min_size=avg // 4, avg_size=avg, max_size=avg * 4), compression_level=level)
Repository.init(open_backend(sys.argv[1]), b"bench-sweep", params=params).close()
"""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_setting(data: Path, work: Path, label: str, avg_kib: int, level: int) -> dict:
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    env = {**os.environ, "AGENT_REPO": str(repo), "AGENT_PASSPHRASE": "bench-sweep",
           "AGENT_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(ROOT)}
    shutil.rmtree(work / "cache", ignore_errors=True)
    subprocess.run([sys.executable, "-c", _INIT, str(repo), str(avg_kib), str(level)], env=env, check=True)
    row = {"label": label, "avg_kib": avg_kib, "level": level, "wall_s": {}, "repo_bytes": {}}
    disk = work / "disk.img"
    for day in ("day0", "day1", "day2", "day3"):
        subprocess.run(["cp", "--sparse=always", str(data / f"{day}.img"), str(disk)], check=True)
        drop_caches()
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "agent", "backup", str(disk), "--json"], env=env, check=True,
                       stdout=subprocess.DEVNULL, cwd=ROOT)
        row["wall_s"][day] = round(time.monotonic() - t0, 2)
        row["repo_bytes"][day] = _size(repo)
    disk.unlink()
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/bench-data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-work/sweep"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = [run_setting(args.data, args.work, *s) for s in SETTINGS]
    (ROOT / "bench" / "results" / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("| setting | day0 s | day1 s | day2 s | day3 s | repository after day3 MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        w = r["wall_s"]
        print(f"| {r['label']} | {w['day0']} | {w['day1']} | {w['day2']} | {w['day3']} | "
              f"{r['repo_bytes']['day3'] / 1e6:.0f} |")


if __name__ == "__main__":
    main()
