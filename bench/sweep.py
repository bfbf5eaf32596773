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
from pathlib import Path

from bench.measure import run_step

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [  # (label, min, average and max chunk KiB, zstd level)
    ("512K avg, zstd 3", 128, 512, 2048, 3), ("512K avg, zstd 2", 128, 512, 2048, 2),
    ("512K avg, zstd 1", 128, 512, 2048, 1), ("1M avg, zstd 2", 256, 1024, 4096, 2),
    ("320K avg, zstd 2", 80, 320, 1280, 2), ("256K avg, zstd 3", 64, 256, 1024, 3),
    ("256K avg, zstd 2", 64, 256, 1024, 2), ("256K avg, zstd 1", 64, 256, 1024, 1),
]

_INIT = """
import sys
from agent.repo.format import ChunkerParams, RepoParams
from agent.repo.repository import Repository
from backends.registry import open_backend
lo, avg, hi, level = (int(a) for a in sys.argv[2:6])
params = RepoParams(chunker=ChunkerParams(min_size=lo << 10, avg_size=avg << 10, max_size=hi << 10),
                    compression_level=level)
Repository.init(open_backend(sys.argv[1]), b"bench-sweep", params=params).close()
"""


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_setting(data: Path, work: Path, label: str, lo: int, avg: int, hi: int, level: int) -> dict:
    repo = work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    env = {**os.environ, "AGENT_REPO": str(repo), "AGENT_PASSPHRASE": "bench-sweep",
           "AGENT_CACHE_DIR": str(work / "cache"), "PYTHONPATH": str(ROOT)}
    shutil.rmtree(work / "cache", ignore_errors=True)
    subprocess.run([sys.executable, "-c", _INIT, str(repo), str(lo), str(avg), str(hi), str(level)], env=env,
                   check=True)
    row = {"label": label, "chunk_kib": [lo, avg, hi], "level": level, "wall_s": {}, "peak_rss_mb": {},
           "repo_bytes": {}}
    disk = work / "disk.img"
    for day in ("day0", "day1", "day2", "day3"):
        subprocess.run(["cp", "--sparse=always", str(data / f"{day}.img"), str(disk)], check=True)
        step = run_step([sys.executable, "-m", "agent", "backup", str(disk), "--json"], env=env, cwd=ROOT,
                        log_prefix=work / "logs" / f"{avg}-{level}-{day}", stdout_devnull=True)
        if step.rc:
            raise SystemExit(f"{label} {day}: agent exited {step.rc} (see {step.stderr})")
        row["wall_s"][day] = round(step.wall_s, 2)
        row["peak_rss_mb"][day] = round(step.peak_rss_kib / 1024)
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
    print("| setting | day0 s | day1 s | day2 s | day3 s | peak RSS MB | repository after day3 MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        w = r["wall_s"]
        print(f"| {r['label']} | {w['day0']} | {w['day1']} | {w['day2']} | {w['day3']} | "
              f"{max(r['peak_rss_mb'].values())} | {r['repo_bytes']['day3'] / 1e6:,.0f} |")


if __name__ == "__main__":
    main()
