"""Granular restore on the bench images: `agent ls` and `agent extract` of the day3 snapshot beside a
whole-image restore, from a local repository. Results in bench/results/browse.json; the page's
"Granular restore" section is written by hand from them.

    python -m bench.browse --images /tmp/bench-data --work /tmp/bench-browse
    python -m bench.browse --s3    # the same through moto_server behind a proxy adding 50 ms a request
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

from bench.measure import fresh_work, run_step
from bench.s3repo import s3_repository

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]


def _json(step) -> dict:
    lines = Path(step.stdout).read_text().strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:  # a command without --json output
        return {}


def _stored_bytes(repo_dir: Path, passfile: Path, partition: int, path: str) -> int:
    """The stored (compressed, sealed) size of the distinct chunks under a file's extents in the latest
    snapshot: what an ideal extraction fetches."""
    from agent.browse.fs import open_filesystem
    from agent.browse.image import SnapshotImage, Window
    from agent.repo.cache import ObjectCache
    from agent.repo.chunklist import DATA
    from agent.repo.repository import Repository
    from agent.repo.snapshots import pick_partition
    from backends.local import LocalBackend

    repo = Repository.open(LocalBackend(repo_dir), passfile.read_bytes().strip(), cache=ObjectCache(None))
    try:
        index = repo.load_index()
        snap = max(repo.list_snapshots(), key=lambda s: s.time)
        part = pick_partition(snap, str(partition))
        with SnapshotImage(repo, index, snap) as image:
            fs = open_filesystem(Window(image, int(part["start"]), int(part["size"])), "bench")
            runs = fs.runs(fs.stat(path)) or []
        spans = [(int(part["start"]) + p, n) for _, p, n in runs]
        seen: dict[bytes, int] = {}
        for ext in repo.snapshot_extents(index, snap):
            if ext.kind == DATA and any(ext.offset < lo + n and ext.offset + ext.length > lo for lo, n in spans):
                loc = index.get(ext.id)
                seen[ext.id] = loc.length if loc else 0
        return sum(seen.values())
    finally:
        repo.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=Path, default=Path("/tmp/bench-data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-browse"))
    ap.add_argument("--s3", action="store_true", help="a repository on S3 (moto) behind a 50 ms proxy")
    args = ap.parse_args(argv)
    if args.s3:
        _s3(args)
        return
    work = args.work
    fresh_work(work)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENT_")},
           "AGENT_REPO": str(work / "repo"), "AGENT_PASSPHRASE_FILE": str(work / "pw"), "AGENT_KDF": "1,8,1"}
    logs = work / "logs"
    results: dict[str, dict] = {}

    def step(name: str, *cmd: str, cold: bool = True, rounds: int = 1) -> dict:
        """The command `rounds` times from a cold start; the median wall time (each round's in walls_s)."""
        walls = []
        for r in range(rounds):
            cache = work / f"cache-{name}-{r}"  # a cold start: no cached index or manifests
            for target in ("out", "day3.img", "p2.img"):  # the restores and extractions write afresh
                p = work / target
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            res = run_step([*AGENT, *cmd], env={**env, "AGENT_CACHE_DIR": str(cache) if cold else str(work / "cache")},
                           log_prefix=logs / name)
            if res.rc != 0:
                raise SystemExit(f"{name} failed: see {res.stderr}")
            walls.append(res.wall_s)
        out = {"wall_s": statistics.median(walls), "walls_s": walls, "cpu_s": res.cpu_s,
               "peak_rss_mb": round(res.peak_rss_kib / 1024, 1), **_json(res)}
        results[name] = out
        print(name, {k: out.get(k) for k in ("walls_s", "fetched_bytes", "bytes", "size")}, flush=True)
        return out

    run_step([*AGENT, "init"], env={**env, "AGENT_CACHE_DIR": str(work / "cache")}, log_prefix=logs / "init")
    for day in ("day0", "day1", "day2", "day3"):
        step(f"backup-{day}", "backup", str(args.images / f"{day}.img"), "--tag", day, "--json", cold=False)
    step("ls-etc", "ls", "latest:2:/etc", "--json", rounds=3)
    archive = step("ls-archive", "ls", "latest:2:/home/alice/archive", "--json")
    tar = max(archive["entries"], key=lambda e: e["size"])
    extract = step("extract-tar", "extract", f"latest:2:{tar['path']}", "--to", str(work / "out"), "--json", rounds=3)
    whole = step("restore-whole", "restore", "latest", "--to", str(work / "day3.img"), "--json", rounds=3)
    part = step("restore-p2", "restore", "latest", "--partition", "2", "--to", str(work / "p2.img"), "--json")
    # Per-byte speed leaves out the cold start every command pays (interpreter, key derivation, index,
    # chunk list, the filesystem's superblock), which the listing of /etc measures: it is most of a
    # 300 MB extraction's wall time. Medians of three cold runs each.
    start = results["ls-etc"]["wall_s"]
    summary = {
        "tar_bytes": tar["size"],
        "extract_fetched_ratio": round(extract["fetched_bytes"] / tar["size"], 3),
        "extract_mb_s": round(tar["size"] / extract["wall_s"] / 1e6, 1),
        "restore_mb_s": round(whole["size"] / whole["wall_s"] / 1e6, 1),
        "restore_written_mb_s": round(whole["written_bytes"] / whole["wall_s"] / 1e6, 1),
        "cold_start_s": start,
        "extract_net_mb_s": round(tar["size"] / max(extract["wall_s"] - start, 1e-3) / 1e6, 1),
        "restore_written_net_mb_s": round(whole["written_bytes"] / max(whole["wall_s"] - start, 1e-3) / 1e6, 1),
        "restore_p2_fetched_over_whole": round(part["fetched_bytes"] / whole["fetched_bytes"], 3),
    }
    stored = _stored_bytes(work / "repo", work / "pw", 2, tar["path"])
    summary["tar_stored_bytes"] = stored
    summary["extract_fetched_over_stored"] = round(extract["fetched_bytes"] / stored, 3)
    summary["extract_over_restore_per_written_byte"] = round(
        summary["extract_net_mb_s"] / summary["restore_written_net_mb_s"], 2)
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    (ROOT / "bench" / "results" / "browse.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    for name in ("day3.img", "p2.img", "out"):
        p = work / name
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def _s3(args: argparse.Namespace) -> None:
    """Back up day3 to moto_server, then list and extract with 50 ms added to every request."""
    work = args.work / "s3"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with s3_repository(work) as s3:
        env = s3.env
        results: dict[str, dict] = {}

        def step(name: str, *cmd: str) -> dict:
            res = run_step([*AGENT, *cmd], env={**env, "AGENT_CACHE_DIR": str(work / f"cache-{name}")},
                           log_prefix=work / "logs" / name)
            if res.rc != 0:
                raise SystemExit(f"{name} failed: see {res.stderr}")
            results[name] = {"wall_s": res.wall_s, "cpu_s": res.cpu_s, **_json(res)}
            print(name, {k: results[name].get(k) for k in ("wall_s", "fetched_bytes", "bytes")}, flush=True)
            return results[name]

        step("init", "init", "--json")
        step("backup-day3", "backup", str(args.images / "day3.img"), "--json")
        s3.delay_every_request(0.05)
        step("ls-etc", "ls", "latest:2:/etc", "--json")
        archive = step("ls-archive", "ls", "latest:2:/home/alice/archive", "--json")
        tar = max(archive["entries"], key=lambda e: e["size"])
        ex = step("extract-tar", "extract", f"latest:2:{tar['path']}", "--to", str(work / "out"), "--json")
        results["summary"] = {"ls_etc_s": results["ls-etc"]["wall_s"],
                              "extract_mb_s": round(tar["size"] / ex["wall_s"] / 1e6, 1)}
        print(json.dumps(results["summary"]))
        (ROOT / "bench" / "results" / "browse-s3.json").write_text(json.dumps(results, indent=1) + "\n")
    shutil.rmtree(work / "out", ignore_errors=True)


if __name__ == "__main__":
    main()
