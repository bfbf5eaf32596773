"""Scale checks the 4 GiB series cannot show: `python -m bench.scale --work DIR` (make bench-scale).

1. A 64 GiB sparse image (a few hundred MB of random and compressible data in four regions, holes
   elsewhere) is backed up twice (first and unchanged) and restored, with wall time and peak RSS:
   does the agent's cost follow the data, not the apparent size?
2. Memory per chunk of a 1,000,000-chunk index (256 GiB of unique data at the default 256 KiB chunks), loaded
   the way `load_index` does: once from a single segment, and once from 2,000 segments (what a
   repository written by backups with a checkpoint every 256 MiB holds). Measured in a fresh child
   process per variant: held column bytes, RSS growth, peak RSS growth, load time, lookup time.

Writes bench/results/scale.json and prints a Markdown snippet for docs/benchmarks.md.
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

from bench.measure import allocated, run_step, tree_size
from bench.tools import Agent, freeze_agent
from bench.verify import same_content

REPO_ROOT = Path(__file__).resolve().parent.parent
GiB, MiB = 1 << 30, 1 << 20
# (offset, bytes, kind): random data does not compress, "text" does (log-like lines)
REGIONS = ((1 * MiB, 96 * MiB, "random"), (8 * GiB, 96 * MiB, "text"),
           (32 * GiB + 12345, 64 * MiB, "random"), (63 * GiB, 64 * MiB, "text"))


def build_image(path: Path, size: int = 64 * GiB) -> int:
    """Sparse image: truncate, then write each region at its offset; returns the data bytes written."""
    import numpy as np

    rng = np.random.default_rng(64)
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length, kind in REGIONS:
            f.seek(offset)
            done = 0
            while done < length:
                n = min(8 * MiB, length - done)
                if kind == "random":
                    f.write(rng.bytes(n))
                else:
                    lines = b"".join(b"%d host%03d sshd[%d]: session opened for user u%d from 10.0.%d.%d\n"
                                     % (offset + done + i, i % 97, 1000 + i % 5000, i % 211, i % 256, i % 199)
                                     for i in range(n // 60 + 1))
                    f.write(lines[:n])
                done += n
    return sum(r[1] for r in REGIONS)


def image_check(work: Path) -> dict:
    root = work / "image"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    img = root / "big.img"
    data = build_image(img)
    passfile = root / "passphrase"
    passfile.write_text(secrets.token_urlsafe(24) + "\n")
    agent = Agent(root, passfile)
    env, logs, out = agent.env(), root / "logs", {"image_size": os.stat(img).st_size, "data_bytes": data,
                                                   "image_alloc": allocated(img)}
    steps = {"init": agent.init_cmd(), "backup first": agent.backup_cmd(img, "first"),
             "backup unchanged": agent.backup_cmd(img, "again")}
    for name, cmd in steps.items():
        res = run_step(cmd, env=env, cwd=root, log_prefix=logs / name.replace(" ", "-"))
        rec = res.as_dict()
        if name.startswith("backup") and res.rc == 0:
            rec["summary"] = agent.backup_info(res.stdout)["summary"]
            rec["repo_bytes"] = tree_size(agent.repo)[0]
        out[name] = rec
        print(f"{name}: rc={res.rc} wall {res.wall_s:.1f} s cpu {res.cpu_s:.1f} s "
              f"rss {res.peak_rss_kib / 1024:.0f} MiB", flush=True)
    ref = out["backup unchanged"].get("summary", {}).get("snapshot_id", "latest")
    target = root / "restore"
    target.mkdir()
    cmd, cwd, restored = agent.restore.run(ref, img, target)
    res = run_step(cmd, env=env, cwd=cwd, log_prefix=logs / "restore")
    rec = res.as_dict()
    if res.rc == 0:
        rec["verified"], rec["verify_detail"] = same_content(str(img), str(restored))
        rec["restored_alloc"] = allocated(restored)
    out["restore"] = rec
    print(f"restore: rc={res.rc} wall {res.wall_s:.1f} s rss {res.peak_rss_kib / 1024:.0f} MiB "
          f"verified={rec.get('verified')} alloc {rec.get('restored_alloc', 0) / 1e6:.0f} MB", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    return out


def _rss_kib(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def index_probe(n: int, segments: int) -> dict:
    """Runs in a fresh child: build N entries as SEGMENTS decoded segments, load like load_index."""
    import random

    from agent.repo.index import SEG_RECORD, ChunkIndex, load_segments_into

    rng = random.Random(1)
    per_pack = 64  # 16 MiB packs of 256 KiB chunks
    decoded = []
    for s in range(segments):  # built before the baseline: load_index decodes every segment first too
        lo, hi = n * s // segments, n * (s + 1) // segments
        m = hi - lo
        records = sorted(SEG_RECORD.pack(rng.randbytes(32), i // per_pack, 0, 150_000, 262_144, 1) for i in range(m))
        etab = b"".join(records)  # sorted by id, as encode_segment writes them
        del records
        packs = [(secrets.token_hex(32), 16 << 20) for _ in range(-(-m // per_pack))]
        decoded.append((packs, etab))
    first = decoded[0][1]
    probe = [bytes(first[i:i + 32]) for i in range(0, min(100_000 * SEG_RECORD.size, len(first)), SEG_RECORD.size)]
    base, base_hwm = _rss_kib(), _rss_kib("VmHWM")
    t0 = time.perf_counter()
    idx = ChunkIndex()
    load_segments_into(idx, decoded)  # as Repository.load_index does
    load_s = time.perf_counter() - t0
    peak = _rss_kib("VmHWM")
    with_segments = _rss_kib()
    del decoded, packs, etab  # the build loop's variables hold the last decoded segment too
    after = _rss_kib()
    ids = probe
    t0 = time.perf_counter()
    hits = sum(cid in idx for cid in ids)
    lookup_us = (time.perf_counter() - t0) / len(ids) * 1e6
    assert hits == len(ids) and len(idx) == n
    return {"entries": n, "segments": segments, "packs": len(idx.pack_ids), "load_s": round(load_s, 3),
            "columns_bytes_per_entry": round(idx.nbytes / n, 1),
            "rss_growth_bytes_per_entry": round((after - base) * 1024 / n, 1),
            "rss_growth_with_decoded_segments_per_entry": round((with_segments - base) * 1024 / n, 1),
            "peak_rss_growth_bytes_per_entry": round((max(peak, base_hwm) - base) * 1024 / n, 1),
            "lookup_us": round(lookup_us, 2)}


def index_check(n: int, segments: int, src: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{REPO_ROOT}")
    r = subprocess.run([sys.executable, "-m", "bench.scale", "--index-probe", str(n), "--segments", str(segments)],
                       check=False, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    if r.returncode != 0:
        return {"entries": n, "segments": segments, "error": r.stderr[-2000:]}
    res = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"index {n:,} entries in {segments} segment(s): {res}", flush=True)
    return res


def snippet(res: dict) -> str:
    img = res["image"]
    lines = [(f"| 64 GiB sparse image, {img['data_bytes'] / 1e6:.0f} MB of data | wall s | CPU s | peak RSS MB | "
              "repository MB |"),
             "|---|---:|---:|---:|---:|"]
    for name in ("backup first", "backup unchanged", "restore"):
        r = img.get(name, {})
        if not r:
            continue
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_rss_kib'] * 1024 / 1e6:.0f} | "
                     + (f"{r['repo_bytes'] / 1e6:.0f}" if "repo_bytes" in r else
                        f"verified: {'yes' if r.get('verified') else 'NO'}, "
                        f"allocated {r.get('restored_alloc', 0) / 1e6:.0f} MB")
                     + " |")
    lines += ["", "| 1,000,000-chunk index | columns B/chunk | RSS growth B/chunk | peak RSS growth B/chunk "
                  "| load s | lookup µs |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in res["index"]:
        if "error" in r:
            lines.append(f"| {r['segments']} segment(s) | failed | | | | |")
            continue
        lines.append(f"| from {r['segments']:,} segment(s), {r['packs']:,} packs | {r['columns_bytes_per_entry']} | "
                     f"{r['rss_growth_bytes_per_entry']} | {r['peak_rss_growth_bytes_per_entry']} | {r['load_s']} | "
                     f"{r['lookup_us']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default=os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), "scale"))
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--segments", type=int, default=0, help="only with --index-probe")
    p.add_argument("--index-probe", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--skip-image", action="store_true")
    p.add_argument("--results", default=str(REPO_ROOT / "bench/results/scale.json"))
    args = p.parse_args(argv)
    if args.index_probe:
        print(json.dumps(index_probe(args.index_probe, args.segments or 1)))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src = work / "agent-src"
    digest = freeze_agent(REPO_ROOT, src)
    res = {"agent_source_digest": digest, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    res["index"] = [index_check(args.entries, s, src) for s in (1, 2000)]
    res["image"] = {} if args.skip_image else image_check(work)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    os.replace(tmp, out)
    print(f"\nresults: {out}\n\nMarkdown for the scale section of docs/benchmarks.md:\n")
    print(snippet(res))


if __name__ == "__main__":
    main()
