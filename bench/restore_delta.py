"""Delta, seeded and resumed restores on the bench images (4 GiB day0..day3), from a local repository.

    python -m bench.restore_delta --images /tmp/bench-data --work /tmp/bench-restore-delta \\
        [--repo /tmp/bench-browse/repo --passphrase-file /tmp/bench-browse/pw] [--limit 100MiB/s]

With --repo, that repository is copied into the work directory first (restores write lock objects,
and the original stays untouched); otherwise day0..day3 are backed up into a new one. Every step
runs with the page cache dropped, except the warm delta, which runs right after the restore it
compares against (as when a restore is repeated). The days are backed up with --all-blocks, so each
result is compared byte for byte with day3.img. --limit applies --limit-download to every restore
(a network instead of the local disk).
Results in bench/results/restore_delta.json (--results to choose).

Steps: a full restore of day3 (the baseline); day2 restored to a file, then day3 onto it with
--delta (cold and warm page cache; by the target's stamp, and with --compare-all reading it);
day3 into a new file with --seed day2-restored.img, once from a plain copy of it (no stamp: read
and hashed) and once from a `cp -a` copy that keeps its stamp (on XFS or btrfs its blocks are then
shared without reading it; elsewhere it is read like the other); a restore
of day3 killed with SIGKILL at about half and run again, with the bytes really left measured from
the target itself (chunks whose bytes are already right), independently of the restore journal.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.measure import drop_caches, process_tree, run_step

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]
MiB = 1 << 20


def _json(path: str) -> dict:
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _same(a: Path, b: Path) -> bool:
    return filecmp.cmp(a, b, shallow=False)


def _remaining(env: dict, target: Path, image: Path) -> dict:
    """Stored bytes of the day3 chunks the target does not hold yet, found by comparing the target
    with the image chunk by chunk (not from the journal), and the stored bytes of all of them."""
    os.environ.update(env)
    from agent.repo.cache import ObjectCache
    from agent.repo.chunklist import DATA
    from agent.repo.repository import Repository
    from backends.local import LocalBackend

    repo = Repository.open(LocalBackend(env["AGENT_REPO"]), Path(env["AGENT_PASSPHRASE_FILE"]).read_bytes().strip(),
                           cache=ObjectCache(None))
    try:
        index = repo.load_index([])
        snap = max(repo.list_snapshots([]), key=lambda s: s.time)
        need: dict[bytes, int] = {}
        total: dict[bytes, int] = {}
        with open(target, "rb") as t, open(image, "rb") as im:
            for ext in repo.snapshot_extents(index, snap):
                if ext.kind != DATA:
                    continue
                loc = index.get(ext.id)
                assert loc is not None
                total[ext.id] = loc.length
                if os.pread(t.fileno(), ext.length, ext.offset) != os.pread(im.fileno(), ext.length, ext.offset):
                    need[ext.id] = loc.length
        return {"remaining_stored_bytes": sum(need.values()), "all_stored_bytes": sum(total.values())}
    finally:
        repo.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=Path("/tmp/bench-data"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-restore-delta"))
    ap.add_argument("--repo", type=Path, help="a repository holding day0..day3 (copied, never written)")
    ap.add_argument("--passphrase-file", type=Path)
    ap.add_argument("--limit", help="--limit-download for every restore, e.g. 100MiB/s")
    ap.add_argument("--skip-resume", action="store_true")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "restore_delta.json")
    args = ap.parse_args(argv)
    if not (args.images / "day3.img").exists():
        raise SystemExit(f"no bench images in {args.images} (shared/bench/make-images.sh builds them)")
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pw = work / "pw"
    if args.repo:
        shutil.copytree(args.repo, work / "repo", symlinks=True)
        shutil.copy(args.passphrase_file or args.repo.parent / "pw", pw)
    else:
        pw.write_text("bench passphrase\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENT_")},
           "AGENT_REPO": str(work / "repo"), "AGENT_PASSPHRASE_FILE": str(pw), "AGENT_KDF": "1,8,1",
           "AGENT_CACHE_DIR": str(work / "cache")}
    logs = work / "logs"
    limit = ["--limit-download", args.limit] if args.limit else []
    results: dict[str, dict] = {}

    def step(name: str, *cmd: str, drop: bool = True) -> dict:
        # a cold cache for each step: every restore fetches the index and chunk lists alike
        res = run_step([*AGENT, *cmd], env={**env, "AGENT_CACHE_DIR": str(work / f"cache-{name}")},
                       log_prefix=logs / name, drop=drop)
        if res.rc != 0:
            raise SystemExit(f"{name} failed: see {res.stderr}")
        out = {"wall_s": res.wall_s, "cpu_s": res.cpu_s, "peak_rss_mb": round(res.peak_rss_kib / 1024, 1),
               **_json(res.stdout)}
        results[name] = out
        print(name, {k: out.get(k) for k in ("wall_s", "fetched_bytes", "written_bytes", "reused_bytes",
                                              "seeded", "resumed_bytes", "shared_bytes")}, flush=True)
        return out

    if not args.repo:
        run_step([*AGENT, "init"], env=env, log_prefix=logs / "init")
        for day in ("day0", "day1", "day2", "day3"):
            step(f"backup-{day}", "backup", str(args.images / f"{day}.img"), "--tag", day, "--json", "--all-blocks",
                 drop=False)
    snaps = json.loads(subprocess.run([*AGENT, "snapshots", "--json"], env=env, capture_output=True,
                                      check=True).stdout)["snapshots"]
    by_tag = {t: s for s in snaps for t in s["tags"]}
    day2, day3 = by_tag["day2"]["id"], by_tag["day3"]["id"]
    added = by_tag["day3"]["stored_bytes"]  # what the day3 backup stored beyond day0..day2
    image = args.images / "day3.img"

    full = step("full", "restore", day3, "--to", str(work / "full.img"), "--json", *limit)
    assert _same(work / "full.img", image), "full restore differs from day3.img"
    os.unlink(work / "full.img")

    target = work / "day2-restored.img"
    step("setup-day2", "restore", day2, "--to", str(target), "--json", *limit)
    shutil.copy(target, work / "seed.img")  # the seed: an older restore, kept as it is (no xattrs: no stamp)
    # the same kept with its stamp (xattr and mtime); on XFS or btrfs the copy shares the blocks
    subprocess.run(["cp", "-a", "--reflink=auto", str(target), str(work / "seed-stamped.img")], check=True)
    cold = step("delta-cold", "restore", day3, "--to", str(target), "--delta", "--json", *limit)
    assert _same(target, image), "delta restore differs from day3.img"
    assert cold["held_snapshot"] == day2, "the restored day2 image carried no stamp"
    os.unlink(target)
    step("setup-day2-read", "restore", day2, "--to", str(target), "--json", *limit)
    read = step("delta-read-cold", "restore", day3, "--to", str(target), "--delta", "--compare-all", "--json", *limit)
    assert _same(target, image), "delta restore (--compare-all) differs from day3.img"
    os.unlink(target)
    step("setup-day2-again", "restore", day2, "--to", str(target), "--json", *limit)
    warm = step("delta-warm", "restore", day3, "--to", str(target), "--delta", "--json", *limit, drop=False)
    assert _same(target, image), "delta restore (warm) differs from day3.img"
    os.unlink(target)
    seeded = step("seed", "restore", day3, "--to", str(work / "seeded.img"), "--seed", str(work / "seed.img"),
                  "--json", *limit)
    assert _same(work / "seeded.img", image), "seeded restore differs from day3.img"
    alloc = os.stat(work / "seeded.img").st_blocks * 512
    os.unlink(work / "seeded.img")
    os.unlink(work / "seed.img")
    stamped = step("seed-stamped", "restore", day3, "--to", str(work / "seeded.img"), "--seed",
                   str(work / "seed-stamped.img"), "--json", *limit)
    assert _same(work / "seeded.img", image), "seeded restore (stamped seed) differs from day3.img"
    os.unlink(work / "seeded.img")
    os.unlink(work / "seed-stamped.img")
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(work)], capture_output=True, text=True).stdout.strip()

    summary = {
        "day3_stored_bytes_added": added,
        "full_wall_s": full["wall_s"], "full_fetched_bytes": full["fetched_bytes"],
        "delta_cold_wall_s": cold["wall_s"], "delta_warm_wall_s": warm["wall_s"],
        "delta_fetched_bytes": cold["fetched_bytes"],
        "delta_fetched_over_added": round(cold["fetched_bytes"] / added, 3),
        "delta_cold_wall_over_full": round(cold["wall_s"] / full["wall_s"], 3),
        "delta_warm_wall_over_full": round(warm["wall_s"] / full["wall_s"], 3),
        "delta_read_cold_wall_s": read["wall_s"], "delta_read_fetched_bytes": read["fetched_bytes"],
        "delta_read_cold_wall_over_full": round(read["wall_s"] / full["wall_s"], 3),
        "seed_wall_s": seeded["wall_s"], "seed_fetched_bytes": seeded["fetched_bytes"],
        "seed_fetched_over_added": round(seeded["fetched_bytes"] / added, 3),
        "seed_wall_over_full": round(seeded["wall_s"] / full["wall_s"], 3),
        "seeded_file_allocated_bytes": alloc, "seed_shared_bytes": seeded.get("shared_bytes"),
        "seed_stamped_wall_s": stamped["wall_s"], "seed_stamped_fetched_bytes": stamped["fetched_bytes"],
        "seed_stamped_wall_over_full": round(stamped["wall_s"] / full["wall_s"], 3),
        "seed_stamped_shared_bytes": stamped.get("shared_bytes"), "work_filesystem": fs,
    }
    if not args.skip_resume:
        summary.update(_resume(env, work, day3, image, full, args.limit or "200MiB/s", logs))
    results["summary"] = summary
    print(json.dumps(summary, indent=1))
    args.results.write_text(json.dumps(results, indent=1, default=str) + "\n")


def _tree_wchar(pid: int) -> int:
    """Bytes written by a process and its descendants (/proc/PID/io, `wchar`)."""
    total = 0
    for p in process_tree(pid):
        try:
            io = dict(line.split(": ") for line in Path(f"/proc/{p}/io").read_text().splitlines())
            total += int(io["wchar"])
        except (OSError, ValueError, KeyError):
            pass
    return total


def _resume(env: dict, work: Path, snap: str, image: Path, full: dict, limit: str, logs: Path) -> dict:
    """kill -9 at about half of a (bandwidth-limited) restore, then the same command again."""
    target = work / "resumed.img"
    drop_caches()
    proc = subprocess.Popen([*AGENT, "restore", snap, "--to", str(target), "--limit-download", limit],
                            env={**env, "AGENT_CACHE_DIR": str(work / "cache-killed")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    half = None
    while proc.poll() is None:  # the first run's wall time at this limit, from a trial, is not known: use bytes
        time.sleep(0.25)
        # bytes the restore and its worker processes wrote (a new image's data ranges are allocated up
        # front: st_blocks says nothing)
        if _tree_wchar(proc.pid) >= full["written_bytes"] // 2:
            half = time.monotonic() - t0
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = _remaining(env, target, image)
    rerun = run_step([*AGENT, "restore", snap, "--to", str(target), "--json"],
                     env={**env, "AGENT_CACHE_DIR": str(work / "cache-resume")}, log_prefix=logs / "resume", drop=True)
    out = _json(rerun.stdout)
    ok = _same(target, image)
    os.unlink(target)
    meta = full["fetched_bytes"] - left["all_stored_bytes"]  # index, chunk lists: fetched by every run
    return {"resume_killed_after_s": half, "resume_remaining_stored_bytes": left["remaining_stored_bytes"],
            "resume_metadata_bytes": meta, "resume_fetched_bytes": out.get("fetched_bytes"),
            "resume_resumed_bytes": out.get("resumed_bytes"), "resume_wall_s": rerun.wall_s,
            "resume_excess_bytes": out.get("fetched_bytes", 0) - left["remaining_stored_bytes"] - meta,
            "resume_identical": ok}


if __name__ == "__main__":
    main()
