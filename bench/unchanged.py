"""An unchanged image file backed up again: a 4 GiB and a 20 GiB image (bench day3, the second one
grown to 20 GiB), each backed up once, then again unchanged: with the page cache dropped before
each step, then warm (as a nightly job whose interpreter and agent are cached). The second run must
read nothing. Reported: the whole command's wall time (process start, key
derivation with the repository's real KDF, lock, index, snapshot) and the backup's own duration.
Results in bench/results/unchanged.json; the page's "Unchanged image files" section is written by
hand from them.

    python -m bench.unchanged [--images /tmp/bench-data] [--work /tmp/bench-unchanged] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from statistics import median

from bench.measure import fresh_work, run_step

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(os.environ.get("BENCH_DATA", "/tmp/bench-data")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-unchanged"))
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    work = args.work
    pw = fresh_work(work)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env.update(AGENT_REPO=str(work / "repo"), AGENT_PASSPHRASE_FILE=str(pw), AGENT_CACHE_DIR=str(work / "cache"))
    logs = work / "logs"
    run_step([*AGENT, "init"], env=env, cwd=ROOT, log_prefix=logs / "init")
    results: dict = {"images": {}}
    for name, size in (("4GiB", None), ("20GiB", 20 << 30)):
        img = work / f"{name}.img"
        subprocess.run(["cp", "--sparse=always", str(args.images / "day3.img"), str(img)], check=True)
        if size:
            os.truncate(img, size)
        first = run_step([*AGENT, "backup", str(img), "--json"], env=env, cwd=ROOT, log_prefix=logs / f"{name}-first")
        runs = []
        for rnd in range(2 * args.rounds):  # cold (page cache dropped: Python and the agent read from disk), then warm
            cold = rnd < args.rounds
            res = run_step([*AGENT, "backup", str(img), "--json"], env=env, cwd=ROOT, drop=cold,
                           log_prefix=logs / f"{name}-again-{rnd}")
            summary = json.loads(Path(f"{logs / f'{name}-again-{rnd}'}.out").read_text().strip().splitlines()[-1])
            runs.append({"cold": cold, "wall_s": res.wall_s, "backup_s": summary["duration_s"],
                         "read_bytes": summary["read_bytes"], "unchanged_from": summary["unchanged_from"],
                         "peak_rss_kib": res.peak_rss_kib})
        results["images"][name] = {
            "size": os.stat(img).st_size, "first_wall_s": first.wall_s, "runs": runs,
            "median_wall_cold_s": median(r["wall_s"] for r in runs if r["cold"]),
            "median_wall_warm_s": median(r["wall_s"] for r in runs if not r["cold"]),
            "median_backup_s": median(r["backup_s"] for r in runs),
            "read_bytes": max(r["read_bytes"] for r in runs),
        }
        print(name, json.dumps(results["images"][name]), flush=True)
        img.unlink()
    out = ROOT / "bench" / "results" / "unchanged.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
