"""Off-site copies: `agent copy` from a local repository to S3 (moto_server on loopback) beside
`restic copy` (restic 0.18) on the same data, and a second copy that finds nothing to do.

Both tools first back up bench day0 and day1 into a local repository (untimed). Then each copies
every snapshot to a new bucket, page cache dropped: MB/s is the source repository's size over the
wall time. Results in bench/results/copy.json; the page's "Off-site copies" section is written by
hand from them.

    python -m bench.copy [--images /tmp/bench-data] [--work /tmp/bench-copy] [--tools-cache /tmp/bench-tools]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from bench.measure import fresh_work, run_step, tree_size

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
DAYS = ("day0", "day1")


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "RESTIC_"))}, **CREDENTIALS, **extra}


def _record(name: str, res, source_bytes: int) -> dict:
    rate = round(source_bytes / 1e6 / res.wall_s, 1) if res.wall_s else None
    rec = {"rc": res.rc, "wall_s": res.wall_s, "cpu_s": res.cpu_s, "peak_rss_kib": res.peak_rss_kib,
           "source_repo_bytes": source_bytes, "mb_per_s": rate}
    print(f"  {name:24} rc={res.rc} wall {res.wall_s:6.1f} s  {rate} MB/s  rss {res.peak_rss_kib // 1024} MiB",
          flush=True)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=Path(os.environ.get("BENCH_DATA", "/tmp/bench-data")))
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-copy"))
    ap.add_argument("--tools-cache", type=Path, default=Path(os.environ.get("BENCH_TOOLS", "/tmp/bench-tools")))
    args = ap.parse_args()

    import boto3

    from tests.servers.moto import start_moto

    work = args.work
    pw = fresh_work(work)
    logs = work / "logs"
    restic = str(args.tools_cache / "restic-0.18/usr/bin/restic")
    disk = work / "disk.img"
    local_agent, local_restic = work / "agent-repo", work / "restic-repo"
    agent_env = _env({"AGENT_REPO": str(local_agent), "AGENT_PASSPHRASE_FILE": str(pw),
                      "AGENT_CACHE_DIR": str(work / "agent-cache")})
    restic_env = _env({"RESTIC_REPOSITORY": str(local_restic), "RESTIC_PASSWORD_FILE": str(pw),
                       "RESTIC_CACHE_DIR": str(work / "restic-cache")})
    run_step([*AGENT, "init"], env=agent_env, cwd=ROOT, log_prefix=logs / "agent-init")
    run_step([restic, "init"], env=restic_env, cwd=ROOT, log_prefix=logs / "restic-init")
    for day in DAYS:  # one path, a new file each night, as the main benchmark does
        disk.unlink(missing_ok=True)
        shutil.copyfile(args.images / f"{day}.img", disk)
        run_step([*AGENT, "backup", str(disk)], env=agent_env, cwd=ROOT, log_prefix=logs / f"agent-{day}", drop=False)
        run_step([restic, "backup", str(disk)], env=restic_env, cwd=ROOT, log_prefix=logs / f"restic-{day}",
                 drop=False)
    disk.unlink(missing_ok=True)
    results: dict = {"days": DAYS, "agent_repo_bytes": tree_size(local_agent)[0],
                     "restic_repo_bytes": tree_size(local_restic)[0]}
    server = start_moto()
    try:
        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        for bucket in ("agent-copy", "restic-copy"):
            s3.create_bucket(Bucket=bucket)
        target = f"s3://agent-copy/repo?endpoint={server.url}"
        init_env = dict(agent_env, AGENT_REPO=target)
        run_step([*AGENT, "init", "--from-repo", str(local_agent), "--from-passphrase-file", str(pw)], env=init_env,
                 cwd=ROOT, log_prefix=logs / "agent-target-init")
        env = dict(agent_env, AGENT_TO_REPO=target, AGENT_TO_PASSPHRASE_FILE=str(pw))
        for name in ("first", "again"):
            res = run_step([*AGENT, "copy"], env=env, cwd=ROOT, log_prefix=logs / f"agent-copy-{name}")
            results[f"agent {name}"] = _record(f"agent copy ({name})", res, results["agent_repo_bytes"])
        renv = dict(restic_env, RESTIC_REPOSITORY=f"s3:{server.url}/restic-copy/repo",
                    RESTIC_FROM_REPOSITORY=str(local_restic), RESTIC_FROM_PASSWORD_FILE=str(pw))
        run_step([restic, "init", "--copy-chunker-params"], env=renv, cwd=ROOT, log_prefix=logs / "restic-target-init")
        for name in ("first", "again"):
            res = run_step([restic, "copy"], env=renv, cwd=ROOT, log_prefix=logs / f"restic-copy-{name}")
            results[f"restic-0.18 {name}"] = _record(f"restic 0.18 copy ({name})", res, results["restic_repo_bytes"])
    finally:
        server.stop()
    out = ROOT / "bench" / "results" / "copy.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
