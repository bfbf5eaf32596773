"""Granular restore on the bench images: `agent ls` and `agent extract` of the day3 snapshot beside a
whole-image restore, from a local repository. Results in bench/results/browse.json; the page's
"Granular restore" section is written by hand from them.

    python -m bench.browse --images /tmp/bench-data --work /tmp/bench-browse
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from bench.measure import run_step

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]


def _json(step) -> dict:
    lines = Path(step.stdout).read_text().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=Path("/tmp/bench-data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-browse"))
    args = ap.parse_args(argv)
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "pw").write_text("bench passphrase\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENT_")},
           "AGENT_REPO": str(work / "repo"), "AGENT_PASSPHRASE_FILE": str(work / "pw"), "AGENT_KDF": "1,8,1"}
    logs = work / "logs"
    results: dict[str, dict] = {}

    def step(name: str, *cmd: str, cold: bool = True) -> dict:
        cache = work / f"cache-{name}"  # a cold start: no cached index or manifests
        res = run_step([*AGENT, *cmd], env={**env, "AGENT_CACHE_DIR": str(cache) if cold else str(work / "cache")},
                       log_prefix=logs / name)
        if res.rc != 0:
            raise SystemExit(f"{name} failed: see {res.stderr}")
        out = {"wall_s": res.wall_s, "cpu_s": res.cpu_s, "peak_rss_mb": round(res.peak_rss_kib / 1024, 1),
               **_json(res)}
        results[name] = out
        print(name, {k: out.get(k) for k in ("wall_s", "fetched_bytes", "bytes", "size")}, flush=True)
        return out

    run_step([*AGENT, "init"], env={**env, "AGENT_CACHE_DIR": str(work / "cache")}, log_prefix=logs / "init")
    for day in ("day0", "day1", "day2", "day3"):
        step(f"backup-{day}", "backup", str(args.images / f"{day}.img"), "--tag", day, "--json", cold=False)
    step("ls-etc", "ls", "latest:2:/etc", "--json")
    archive = step("ls-archive", "ls", "latest:2:/home/alice/archive", "--json")
    tar = max(archive["entries"], key=lambda e: e["size"])
    extract = step("extract-tar", "extract", f"latest:2:{tar['path']}", "--to", str(work / "out"), "--json")
    whole = step("restore-whole", "restore", "latest", "--to", str(work / "day3.img"), "--json")
    part = step("restore-p2", "restore", "latest", "--partition", "2", "--to", str(work / "p2.img"), "--json")
    summary = {
        "tar_bytes": tar["size"],
        "extract_fetched_ratio": round(extract["fetched_bytes"] / tar["size"], 3),
        "extract_mb_s": round(tar["size"] / extract["wall_s"] / 1e6, 1),
        "restore_mb_s": round(whole["size"] / whole["wall_s"] / 1e6, 1),
        "restore_p2_fetched_over_whole": round(part["fetched_bytes"] / whole["fetched_bytes"], 3),
    }
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    (ROOT / "bench" / "results" / "browse.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    for name in ("day3.img", "p2.img", "out"):
        p = work / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
