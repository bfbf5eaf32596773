"""`agent status` on a fleet of 200 snapshots in an S3 repository (moto_server, 50 ms added to every
request by a proxy, like a cloud round trip): the first run fills the cache with the manifests, the
second is what a wall screen or a cron job pays. Results in bench/results/status.json; the page's
"Fleet status" section is written by hand from them.

    python -m bench.status [--snapshots 200] [--hosts 10] [--work /tmp/bench-status]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.measure import run_step
from bench.s3repo import CREDENTIALS, s3_repository

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]


def _fill(url: str, passphrase: bytes, image: Path, snapshots: int, hosts: int) -> None:
    """`snapshots` nightly snapshots of a small image spread over `hosts` hosts, written in-process
    (one process, one key derivation) with the real backup, so the bench measures status, not setup."""
    from agent.backup.run import BackupOptions, run_backup
    from agent.repo.repository import Repository
    from agent.repo.storage import open_storage

    repo = Repository.open(open_storage(url), passphrase)
    try:
        start = datetime.now(UTC) - timedelta(days=snapshots // hosts + 1)
        for i in range(snapshots):
            night, host = divmod(i, hosts)
            with open(image, "r+b") as f:  # a little new data every night
                f.seek((i * 4096) % (1 << 20))
                f.write(os.urandom(4096))
            run_backup(repo, str(image), BackupOptions(host=f"host{host:02d}", time=start + timedelta(days=night),
                                                       direct_io=False))
    finally:
        repo.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snapshots", type=int, default=200)
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-status"))
    args = ap.parse_args()

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image = work / "disk.img"
    image.write_bytes(os.urandom(1 << 20))
    with s3_repository(work) as s3:
        os.environ.update(CREDENTIALS)
        url = s3.url
        env = {**s3.env, "AGENT_CACHE_DIR": str(work / "cache")}
        os.environ.update({k: v for k, v in env.items() if k.startswith("AGENT_")})
        res = run_step([*AGENT, "init"], env=env, log_prefix=work / "logs" / "init")
        if res.rc != 0:
            raise SystemExit(f"init failed: see {res.stderr}")
        _fill(url, b"bench passphrase", image, args.snapshots, args.hosts)
        s3.delay_every_request(0.05)
        results: dict[str, dict] = {}
        for name in ("status-cold", "status-warm", "status-warm-2"):
            if name == "status-cold":
                shutil.rmtree(work / "cache", ignore_errors=True)
            res = run_step([*AGENT, "status", "--json", "--stale-after", "1000d"], env=env,
                           log_prefix=work / "logs" / name)
            if res.rc != 0:
                raise SystemExit(f"{name} failed (exit {res.rc}): see {res.stderr}")
            data = json.loads(Path(res.stdout).read_text().strip().splitlines()[-1])
            results[name] = {"wall_s": res.wall_s, "cpu_s": res.cpu_s, "snapshots": data["snapshots"],
                             "sources": len(data["sources"])}
            print(name, results[name], flush=True)
        results["summary"] = {"snapshots": args.snapshots, "hosts": args.hosts, "request_delay_ms": 50,
                              "cold_s": results["status-cold"]["wall_s"],
                              "warm_s": min(results["status-warm"]["wall_s"],
                                            results["status-warm-2"]["wall_s"])}
        print(json.dumps(results["summary"]))
        out = ROOT / "bench" / "results" / "status.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
