"""Cloud paths: backup and cold-cache restore through S3 with a round trip added to every request,
the agent beside restic 0.18, and the agent alone through GCS.

moto_server (S3) and fake-gcs-server (GCS) sit behind the tests' fault proxy
(tests/servers/faultproxy.py), which holds every request for the given delay before forwarding
it, and can cap the bytes per second each way (one shared link). For every setting each tool backs
up the same image into a new bucket and then restores it with an empty cache (a machine with
nothing); the first setting's restores are verified (bench.verify), the rest only timed unless
--verify-all. Page cache dropped before every step; wall, CPU, peak RSS, requests seen at the proxy and
the most held at once. Results in bench/results/cloud.json; the page's "Cloud paths" section is
written by hand from them.

    python -m bench.cloud [--image /tmp/bench-data/day0.img] [--delays 0,50,150] [--cap-mbit 200]
                          [--work /tmp/bench-cloud] [--tools-cache /tmp/bench-tools] [--no-gcs]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

from bench.measure import fresh_work, run_step
from bench.verify import verify_restore

ROOT = Path(__file__).resolve().parents[1]
AGENT = [sys.executable, "-m", "agent"]
SERVER_PIDS: dict[int, int] = {}  # storage server port -> its pid, for the CPU it uses (filled by main)
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "RESTIC_"))}, **extra}


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _step(rec: dict, name: str, proxy, cmd: list[str], env: dict[str, str], logs: Path) -> dict:
    """One timed step; also the CPU the harness's side took meanwhile (the proxy, in this process,
    and the storage server), which shares the machine's cores with the tool."""
    proxy.clear()
    proxy.reset_counts()
    server_pid = SERVER_PIDS.get(proxy.upstream[1])
    before = (time.process_time(), _cpu_of(server_pid) if server_pid else 0.0)
    res = run_step(cmd, env=env, cwd=ROOT, log_prefix=logs / name)
    harness = time.process_time() - before[0] + ((_cpu_of(server_pid) - before[1]) if server_pid else 0.0)
    requests = proxy.requests()
    out = {"rc": res.rc, "wall_s": res.wall_s, "cpu_s": res.cpu_s, "peak_rss_kib": res.peak_rss_kib,
           "requests": len(requests), "most_in_flight": proxy.max_in_flight, "server_proxy_cpu_s": round(harness, 2)}
    rec[name] = out
    print(f"    {name:28} rc={res.rc} wall {res.wall_s:7.1f} s  cpu {res.cpu_s:5.1f} s  "
          f"server+proxy cpu {harness:5.1f} s  rss {res.peak_rss_kib // 1024:5} MiB  requests {len(requests):5}  "
          f"in flight {proxy.max_in_flight:3}", flush=True)
    return out


def _agent(rec: dict, label: str, url: str, extra_env: dict[str, str], image: Path, work: Path, proxy,
           logs: Path, verify: bool) -> None:
    pw = work / "pw"
    env = _env({**extra_env, "AGENT_REPO": url, "AGENT_PASSPHRASE_FILE": str(pw),
                "AGENT_CACHE_DIR": str(work / f"cache-{uuid.uuid4().hex[:8]}")})
    run_step([*AGENT, "init"], env=env, cwd=ROOT, log_prefix=logs / f"{label}-init")
    _step(rec, f"{label} backup", proxy, [*AGENT, "backup", str(image), "--json"], env, logs)
    env["AGENT_CACHE_DIR"] = str(work / f"cache-{uuid.uuid4().hex[:8]}")  # restore with nothing cached
    out = work / "restored.img"
    out.unlink(missing_ok=True)
    res = _step(rec, f"{label} restore", proxy, [*AGENT, "restore", "latest", "--to", str(out)], env, logs)
    if res["rc"] == 0 and verify:
        res["verified"], res["verify_detail"] = verify_restore(str(image), str(out), whole=False)
    out.unlink(missing_ok=True)


def _restic(rec: dict, label: str, exe: str, url: str, image: Path, work: Path, proxy, logs: Path,
            verify: bool) -> None:
    pw = work / "pw"
    env = _env({**CREDENTIALS, "RESTIC_REPOSITORY": url, "RESTIC_PASSWORD_FILE": str(pw),
                "RESTIC_CACHE_DIR": str(work / f"rcache-{uuid.uuid4().hex[:8]}")})
    run_step([exe, "init"], env=env, cwd=ROOT, log_prefix=logs / f"{label}-init")
    _step(rec, f"{label} backup", proxy, [exe, "backup", str(image)], env, logs)
    env["RESTIC_CACHE_DIR"] = str(work / f"rcache-{uuid.uuid4().hex[:8]}")
    target = work / "restic-restore"
    shutil.rmtree(target, ignore_errors=True)
    res = _step(rec, f"{label} restore", proxy, [exe, "restore", "latest", "--target", str(target), "--sparse"],
                env, logs)
    out = target / str(image.resolve()).lstrip("/")
    if res["rc"] == 0 and verify:
        res["verified"], res["verify_detail"] = verify_restore(str(image), str(out), whole=True)
    shutil.rmtree(target, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=Path(os.environ.get("BENCH_DATA", "/tmp/bench-data")) / "day0.img")
    ap.add_argument("--delays", default="0,50,150", help="milliseconds added to every request")
    ap.add_argument("--cap-mbit", type=float, default=200.0, help="one more run at 0 ms with this cap (0: none)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-cloud"))
    ap.add_argument("--tools-cache", type=Path, default=Path(os.environ.get("BENCH_TOOLS", "/tmp/bench-tools")))
    ap.add_argument("--no-gcs", action="store_true")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results" / "cloud.json")
    ap.add_argument("--verify-all", action="store_true", help="verify every restore (default: the first setting's)")
    ap.add_argument("--no-verify", action="store_true", help="time only (a rerun of verified settings)")
    args = ap.parse_args()

    import boto3

    from tests.servers.faultproxy import Fault, FaultProxy
    from tests.servers.moto import start_moto

    work = args.work
    fresh_work(work)
    logs = work / "logs"
    restic = str(args.tools_cache / "restic-0.18/usr/bin/restic")
    settings = [(int(d), 0.0) for d in args.delays.split(",")] + ([(0, args.cap_mbit)] if args.cap_mbit else [])
    results: dict = {"image": str(args.image), "image_size": args.image.stat().st_size, "settings": []}
    server = start_moto()
    gcs = None
    try:
        port = int(server.url.rsplit(":", 1)[1])
        SERVER_PIDS[port] = server.proc.pid
        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        for n, (delay_ms, cap) in enumerate(settings):
            verify = not args.no_verify and (args.verify_all or n == 0)
            rec: dict = {"delay_ms": delay_ms, "cap_mbit": cap}
            print(f"== {delay_ms} ms per request" + (f", capped at {cap:g} Mbit/s" if cap else ""), flush=True)
            with FaultProxy(port) as proxy:
                proxy.rate = cap * 1e6 / 8 if cap else 0.0
                if delay_ms:
                    proxy.add(Fault("delay", seconds=delay_ms / 1000, times=10**9))
                for tool in ("agent", "restic-0.18"):
                    bucket = f"cloud-{uuid.uuid4().hex[:12]}"
                    s3.create_bucket(Bucket=bucket)
                    if tool == "agent":
                        _agent(rec, "agent s3", f"s3://{bucket}/repo?endpoint={proxy.url}", CREDENTIALS,
                               args.image, work, proxy, logs / f"{delay_ms}-{cap:g}", verify)
                    else:
                        _restic(rec, "restic-0.18 s3", restic, f"s3:{proxy.url}/{bucket}/restic", args.image, work,
                                proxy, logs / f"{delay_ms}-{cap:g}", verify)
                    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):  # free moto's memory
                        s3.delete_object(Bucket=bucket, Key=obj["Key"])
                    s3.delete_bucket(Bucket=bucket)
            if not args.no_gcs and not cap:
                gcs = gcs or _start_gcs()
                if gcs is not None:
                    SERVER_PIDS[int(gcs.url.rsplit(":", 1)[1])] = gcs.proc.pid
                    with FaultProxy(int(gcs.url.rsplit(":", 1)[1])) as proxy:
                        if delay_ms:
                            proxy.add(Fault("delay", seconds=delay_ms / 1000, times=10**9))
                        bucket = f"cloud-{uuid.uuid4().hex[:12]}"
                        _create_gcs_bucket(gcs.url, bucket)
                        _agent(rec, "agent gcs", f"gs://{bucket}/repo?endpoint={proxy.url}&project=test", {},
                               args.image, work, proxy, logs / f"{delay_ms}-gcs", verify)
            results["settings"].append(rec)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
    finally:
        server.stop()
        if gcs is not None:
            gcs.stop()
    print(f"results: {args.results}")


def _start_gcs():
    """fake-gcs-server as the tests start it (memory backend), or None (and a note) when it cannot run."""
    try:
        from tests.servers.fakegcs import start_fake_gcs

        return start_fake_gcs()
    except BaseException as exc:  # noqa: BLE001 - pytest.skip() (an Exception subclass of its own) when missing
        print(f"    (GCS skipped: {exc})", flush=True)
        return None


def _create_gcs_bucket(endpoint: str, bucket: str) -> None:
    import urllib.request

    req = urllib.request.Request(f"{endpoint}/storage/v1/b?project=test", data=json.dumps({"name": bucket}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=10).read()


if __name__ == "__main__":
    main()
