"""Entry point: `python -m bench.run --data DIR --work DIR --rounds N`.

Schedule: per round, a fresh repository per tool; the steps are interleaved per step (init all
tools, then day0 for every tool, then day1 ...), and the tool order rotates from round to round.
Per step, not per tool, so that all the tools meet the same machine conditions (other load,
disk state) within minutes of each other, and each day's image is copied once and backed up by
all of them from the very same file; rotating the order cancels any advantage of going first.

Every day's image is copied to WORK/disk.img (outside the timing, as a new file) and all tools back
up that one path, as a nightly job backs up one disk: path-based parent snapshots and files caches
behave as in real use. Results go to bench/results/latest.json, then docs/benchmarks.md is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import fetch, machine, report
from bench.measure import allocated, run_step, tree_size
from bench.tools import TOOLS, Restic018, Tool, freeze_agent
from bench.verify import sparse_grade, verify_restore

REPO_ROOT = Path(__file__).resolve().parent.parent
DAYS = (0, 1, 2, 3)
RESTORE_DAYS = (3, 0)


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.data, self.work, self.rounds = Path(args.data), Path(args.work), args.rounds
        self.tools = args.tools.split(",")
        self.tools_cache = Path(args.tools_cache)
        self.results_path = Path(args.results)
        self.records: list[dict] = []
        self.meta: dict = {}

    # -- bookkeeping -------------------------------------------------------------------------
    def save(self, final: bool = False) -> None:
        doc = {"meta": self.meta, "steps": self.records}
        tmp = self.results_path.with_name(self.results_path.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(doc, indent=1))
        if final:
            os.replace(tmp, self.results_path)

    def record(self, rnd: int, tool: str, step: str, res, **extra) -> dict:
        rec = {"round": rnd, "tool": tool, "step": step, **res.as_dict(), **extra}
        self.records.append(rec)
        self.save()
        msg = (f"[round {rnd}] {step:<13} {tool:<11} rc={res.rc} wall {res.wall_s:7.1f} s  cpu {res.cpu_s:7.1f} s"
               f"  rss {res.peak_rss_kib / 1024:6.0f} MiB")
        if "repo_bytes" in extra:
            msg += f"  repo {_mb(extra['repo_bytes'])} (+{_mb(extra['added_bytes'])})"
        if "verified" in extra:
            msg += (f"  verified={extra['verified']} sparse={extra['sparse']} alloc {_mb(extra['restored_alloc'])}"
                    f" (source image {_mb(extra['original_alloc'])})")
        print(msg, flush=True)
        if res.rc != 0:
            tail = Path(res.stderr).read_text(errors="replace")[-2000:]
            print(f"    FAILED: {' '.join(res.cmd)}\n    {tail}", flush=True)
        return rec

    # -- checks ------------------------------------------------------------------------------
    def preflight(self) -> None:
        missing = [str(self.data / f"day{d}.img") for d in DAYS if not (self.data / f"day{d}.img").exists()]
        if missing:
            sys.exit(f"missing images: {', '.join(missing)} (run make-images.sh first)")
        for t in self.tools:
            if t not in TOOLS:
                sys.exit(f"unknown tool {t}; known: {', '.join(TOOLS)}")
        if Restic018.name in self.tools:  # fetched once into the cache, reused by later runs
            try:
                Restic018.exe = str(fetch.restic(self.tools_cache))
            except fetch.FetchError as e:
                sys.exit(f"cannot fetch restic {fetch.RESTIC_VERSION}: {e}")
        for t in self.tools:
            exe = getattr(TOOLS[t], "exe", None)
            if isinstance(exe, str) and not shutil.which(exe):
                sys.exit(f"{t} is not installed ({exe} not found)")
        self.work.mkdir(parents=True, exist_ok=True)
        alloc = max(allocated(self.data / f"day{d}.img") for d in DAYS)
        size = os.stat(self.data / "day3.img").st_size
        # disk.img + one restore (restic 0.14's is not sparse) + every tool's repository (<= the data)
        need = alloc + size + len(self.tools) * alloc
        free = shutil.disk_usage(self.work).free
        print(f"disk: {_mb(free)} free in {self.work}, about {_mb(need)} needed", flush=True)
        if free < need:
            sys.exit(f"not enough space in {self.work}: {_mb(free)} free, {_mb(need)} needed")
        if os.geteuid() != 0:
            print("warning: not root, the page cache cannot be dropped; numbers will flatter every tool")

    # -- one round ---------------------------------------------------------------------------
    def run_round(self, rnd: int) -> None:
        root = self.work / f"round{rnd}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        logs = root / "logs"
        passfile = root / "passphrase"
        passfile.write_text(secrets.token_urlsafe(24) + "\n")
        passfile.chmod(0o600)
        k = rnd % len(self.tools)
        order = self.tools[k:] + self.tools[:k]
        tools: dict[str, Tool] = {name: TOOLS[name](root, passfile) for name in order}
        print(f"== round {rnd}: order {', '.join(order)}", flush=True)
        ok = {}
        size = {}
        refs: dict[str, dict[int, str]] = {name: {} for name in order}
        for name, tool in tools.items():
            res = run_step(tool.init_cmd(), env=tool.env(), cwd=root, log_prefix=logs / f"{name}-init")
            size[name] = tree_size(tool.repo)[0] if tool.repo.exists() else 0
            self.record(rnd, name, "init", res, repo_bytes=size[name], repo_files=tree_size(tool.repo)[1]
                        if tool.repo.exists() else 0, added_bytes=size[name])
            ok[name] = res.rc == 0
        disk = self.work / "disk.img"
        for day in DAYS:
            src = self.data / f"day{day}.img"
            disk.unlink(missing_ok=True)  # a new file each night: new inode and mtime, as a changed image
            subprocess.run(["cp", "--sparse=always", str(src), str(disk)], check=True)
            disk_alloc = allocated(disk)
            res = run_step(["cat", str(disk)], log_prefix=logs / f"cat-day{day}", stdout_devnull=True)
            self.record(rnd, "cat", f"backup day{day}", res, source_alloc=disk_alloc)
            for name, tool in tools.items():
                if not ok[name]:
                    continue
                res = run_step(tool.backup_cmd(disk, f"day{day}"), env=tool.env(), cwd=root,
                               log_prefix=logs / f"{name}-backup-day{day}")
                info = tool.backup_info(res.stdout) if res.rc == 0 else {"ref": "", "summary": {}}
                refs[name][day] = info["ref"]
                new, files = tree_size(tool.repo)
                self.record(rnd, name, f"backup day{day}", res, repo_bytes=new, repo_files=files,
                            added_bytes=new - size[name], source_alloc=disk_alloc, snapshot=info["ref"],
                            tool_summary=info["summary"])
                size[name] = new
                ok[name] = res.rc == 0 and bool(info["ref"])
        source_alloc = dict.fromkeys(DAYS)
        for day in RESTORE_DAYS:
            src = self.data / f"day{day}.img"
            for name, tool in tools.items():
                ref = refs[name].get(day)
                if not ref:
                    continue
                target = root / f"restore-{name}"
                shutil.rmtree(target, ignore_errors=True)
                target.mkdir()
                cmd, cwd, out = tool.restore(ref, disk, target)
                res = run_step(cmd, env=tool.env(), cwd=cwd, log_prefix=logs / f"{name}-restore-day{day}")
                verified, reason, alloc = False, "restore failed", 0
                if res.rc == 0 and out.exists():
                    verified, reason = verify_restore(str(src), str(out), whole=name != "agent")
                    alloc = allocated(out)
                elif res.rc == 0:
                    reason = f"restored file not found at {out}"
                if source_alloc[day] is None:  # what the backed-up copy of that day allocated
                    source_alloc[day] = next((r["source_alloc"] for r in self.records if r["round"] == rnd
                                              and r["tool"] == "cat" and r["step"] == f"backup day{day}"), 0)
                apparent, original = os.stat(src).st_size, allocated(src)
                self.record(rnd, name, f"restore day{day}", res, verified=verified, verify_detail=reason,
                            restored_alloc=alloc, source_alloc=source_alloc[day], original_alloc=original,
                            apparent=apparent, sparse=sparse_grade(alloc, original, apparent))
                if not verified:
                    print(f"    RESTORE MISMATCH {name} day{day}: {reason}", flush=True)
                shutil.rmtree(target, ignore_errors=True)
        for tool in tools.values():  # keep the logs, free the space for the next round
            shutil.rmtree(tool.repo, ignore_errors=True)
        disk.unlink(missing_ok=True)

    def run(self) -> None:
        self.preflight()
        frozen = freeze_agent(REPO_ROOT, self.work / "agent-src") if "agent" in self.tools else None
        self.meta = {"agent_source_digest": frozen,"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                     "rounds": self.rounds, "tools": self.tools,
                     "data": str(self.data), "work": str(self.work), "schedule": "per step, tool order rotated",
                     "image_alloc": {f"day{d}": allocated(self.data / f"day{d}.img") for d in DAYS},
                     "image_size": os.stat(self.data / "day0.img").st_size,
                     "machine": machine.describe(self.work, REPO_ROOT, self.tools)}
        manifest = self.data / "manifest.txt"
        if manifest.exists():
            self.meta["manifest"] = manifest.read_text()
        for rnd in range(1, self.rounds + 1):
            self.run_round(rnd)
        self.meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.save(final=True)
        print(f"results: {self.results_path}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("BENCH_DATA", "/tmp/bench-data"))
    p.add_argument("--work", default=os.environ.get("BENCH_WORK", "/tmp/bench-work"))
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "3")))
    p.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated, of: {', '.join(TOOLS)}")
    p.add_argument("--tools-cache", default=str(fetch.DEFAULT_CACHE),
                   help="where restic 0.18 is unpacked (bench.fetch); BENCH_TOOLS")
    p.add_argument("--results", default=str(REPO_ROOT / "bench/results/latest.json"))
    p.add_argument("--doc", default=str(REPO_ROOT / "docs/benchmarks.md"))
    p.add_argument("--report-only", action="store_true", help="rebuild docs/benchmarks.md from the results")
    args = p.parse_args(argv)
    if not args.report_only:
        Bench(args).run()
    report.write(Path(args.results), Path(args.doc), REPO_ROOT / "docs/img/benchmarks.png", REPO_ROOT)
    print(f"report: {args.doc}")


if __name__ == "__main__":
    main()
