"""Build the golden repository that tests/repo/test_golden.py opens (run by hand, never by the tests).

    .venv/bin/python tests/repo/golden/make.py [--out DIR]

It drives the `agent` command line only (`python -m agent ...` in a subprocess, run from the
checkout this script sits in), never agent.* imports, so it does not depend on module paths:

1. builds three small disk images (2 MiB each, MBR + random data + zero runs + compressible
   log text + a repeated block, so dedup and compression both happen) from a seeded random
   generator: night 1; night 2 = night 1 with two new 32 KiB "files" (X and Y) written and a
   text edit; night 3 = night 2 with Y gone again (its range back to night 1's bytes) and another
   text edit. Y's chunks are therefore only in night 2;
2. `agent init --pack-size 1` with a cheap Argon2id (AGENT_KDF=1,8192,1) and passphrase-1;
3. backs up the three nights with fixed --time, --host and --tag;
4. `agent key add` with passphrase-2 (via AGENT_NEW_PASSPHRASE_FILE);
5. `agent forget --keep-last 1 --keep-tag weekly` (removes night 2), then
   `agent prune --max-unused 0%`, and checks that prune deleted or repacked at least one pack
   (night 2's pack holds X, still used by night 3, and Y, used by nobody: it is repacked);
6. removes empty directories (git does not store them, so the checked-in copy has none), then
   verifies the result through the CLI on a copy: listing, key list, byte-for-byte restores and
   `check --read-data`, with both passphrases;
7. writes manifest.json (snapshots with their image SHA-256, keys, pack count, the agent version
   and the git commit that wrote the repository) and passphrase-1 / passphrase-2 into DIR.

DIR defaults to this script's directory, and the script refuses to write into a DIR that
already holds a repository: a golden repository is never regenerated (see README.md). For a
new format, keep this one and write the new one next to it, e.g. --out tests/repo/golden-v2.

The images themselves are not kept (only their SHA-256); they are rebuilt deterministically
from SEED by this script, should anyone need them (--keep-images DIR).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]  # the checkout whose `agent` writes the repository

SEED = 20240304
KIB, MIB = 1 << 10, 1 << 20
IMAGE_SIZE = 2 * MIB
HOST = "golden-host"
KDF = "1,8192,1"  # cheap Argon2id, so the test opens the repository in milliseconds
PACK_SIZE_MIB = 1  # the smallest `agent init --pack-size` allows
MAX_REPO_BYTES = 768 * KIB  # it is checked in: keep it small
PASSPHRASES = ("golden test passphrase one", "golden test passphrase two")
SECOND_KEY_LABEL = "golden second key"
NIGHTS = (  # (time, tags); the night-2 snapshot is forgotten
    ("2024-03-04T02:00:00Z", ["nightly", "weekly"]),
    ("2024-03-05T02:00:00Z", ["nightly"]),
    ("2024-03-06T02:00:00Z", ["nightly"]),
)
FORGET = ["--keep-last", "1", "--keep-tag", "weekly"]
FORGOTTEN = 1  # index in NIGHTS of the snapshot FORGET removes

# image layout (byte offsets)
PART_START = 64 * KIB  # the MBR's single partition starts here
RANDOM_A = (PART_START, 128 * KIB)  # incompressible "binary" data
TEXT_1 = (RANDOM_A[0] + RANDOM_A[1], 384 * KIB)  # compressible log text
ZEROS = (TEXT_1[0] + TEXT_1[1], 640 * KIB)  # a zero run (free space)
REPEAT = (ZEROS[0] + ZEROS[1], TEXT_1[1])  # a copy of TEXT_1
TEXT_2 = (REPEAT[0] + REPEAT[1], IMAGE_SIZE - (REPEAT[0] + REPEAT[1]))  # more log text, to the end
FILE_X = (TEXT_1[0] + 128 * KIB, 32 * KIB)  # night 2 writes random X here; night 3 keeps it
FILE_Y = (TEXT_2[0] + 64 * KIB, 32 * KIB)  # night 2 writes random Y here; night 3 drops it
EDIT_2 = (TEXT_1[0] + 320 * KIB, 2 * KIB)  # night 2's text edit
EDIT_3 = (TEXT_2[0] + 384 * KIB, 2 * KIB)  # night 3's text edit

_WORDS = ("kernel", "systemd", "sshd", "cron", "started", "stopped", "session", "opened", "closed", "for", "user",
          "root", "backup", "disk", "eth0", "link", "up", "down", "temperature", "ok", "warning", "timer", "unit",
          "nginx", "GET", "POST", "/index.html", "/api/v1/items", "200", "404", "took", "ms")


def log_text(rng: random.Random, size: int, day: int) -> bytes:
    """Syslog-like lines, their messages drawn from a small pool: compresses several-fold (as logs do)."""
    services = {w: rng.randint(100, 9999) for w in _WORDS[:8]}
    messages = [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(3, 9))) for _ in range(64)]
    out, second = bytearray(), 0
    while len(out) < size:
        second += rng.randint(1, 3)
        name = rng.choice(_WORDS[:8])
        out += (f"2024-03-{day:02d} {second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d} "
                f"{HOST} {name}[{services[name]}]: {rng.choice(messages)}\n").encode()
    return bytes(out[:size])


def mbr(size: int) -> bytes:
    """A classic MBR with one Linux partition from PART_START to the end of the image."""
    sector = bytearray(512)
    sector[440:444] = struct.pack("<I", 0x60D5EA7E)  # disk signature
    first, count = PART_START // 512, (size - PART_START) // 512
    sector[446:462] = struct.pack("<B3sB3sII", 0x00, b"\xfe\xff\xff", 0x83, b"\xfe\xff\xff", first, count)
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def put(img: bytearray, span: tuple[int, int], data: bytes) -> None:
    off, n = span
    assert len(data) == n, (span, len(data))
    img[off:off + n] = data


def build_images() -> list[bytes]:
    rng = random.Random(SEED)
    night1 = bytearray(IMAGE_SIZE)
    put(night1, (0, 512), mbr(IMAGE_SIZE))
    put(night1, RANDOM_A, rng.randbytes(RANDOM_A[1]))
    put(night1, TEXT_1, log_text(rng, TEXT_1[1], 3))
    put(night1, REPEAT, bytes(night1[TEXT_1[0]:TEXT_1[0] + TEXT_1[1]]))
    put(night1, TEXT_2, log_text(rng, TEXT_2[1], 3))

    night2 = bytearray(night1)
    put(night2, FILE_X, rng.randbytes(FILE_X[1]))
    put(night2, FILE_Y, rng.randbytes(FILE_Y[1]))
    put(night2, EDIT_2, log_text(rng, EDIT_2[1], 4))

    night3 = bytearray(night2)
    put(night3, FILE_Y, bytes(night1[FILE_Y[0]:FILE_Y[0] + FILE_Y[1]]))
    put(night3, EDIT_3, log_text(rng, EDIT_3[1], 5))
    return [bytes(night1), bytes(night2), bytes(night3)]


class Agent:
    """`python -m agent` from ROOT with a private cache and the given passphrase file."""

    def __init__(self, repo: Path, cache: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
        self.env.update(AGENT_REPO=str(repo), AGENT_CACHE_DIR=str(cache), AGENT_KDF=KDF, PYTHONPATH=str(ROOT))

    def __call__(self, passfile: Path, *args: str, extra_env: dict | None = None, expect: int = 0):
        proc = subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, capture_output=True, text=True,
                              env={**self.env, "AGENT_PASSPHRASE_FILE": str(passfile), **(extra_env or {})},
                              timeout=600)
        if proc.returncode != expect:
            sys.exit(f"agent {' '.join(args)} exited {proc.returncode} (expected {expect})\n"
                     f"{proc.stdout}\n{proc.stderr}")
        return proc

    def json(self, passfile: Path, *args: str, **kw):
        """The last line of stdout (--json commands may print progress events before the result)."""
        return json.loads(self(passfile, *args, **kw).stdout.strip().splitlines()[-1])


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def agent_version() -> str:
    proc = subprocess.run([sys.executable, "-c", "import agent; print(agent.__version__)"], cwd=ROOT,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc.stdout.strip() or "unknown"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def remove_empty_dirs(top: Path) -> None:
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(MIB), b""):
            h.update(piece)
    return h.hexdigest()


def verify(repo: Path, manifest: dict, passfiles: list[Path], work: Path) -> None:
    """What the test checks, on a copy (check writes a lock): fail here rather than check in a bad repository."""
    copy = work / "verify-repo"
    shutil.copytree(repo, copy)
    agent = Agent(copy, work / "verify-cache")
    want = [{k: s[k] for k in ("id", "time", "host", "tags", "size")} for s in manifest["snapshots"]]
    for i, pf in enumerate(passfiles):
        got = [{k: s[k] for k in ("id", "time", "host", "tags", "size")}
               for s in agent.json(pf, "snapshots", "--json")["snapshots"]]
        assert got == want, (got, want)
        keys = agent.json(pf, "key", "list", "--json")["keys"]
        assert len(keys) == manifest["keys"]["count"], keys
        assert [k["id"] for k in keys if k["current"]] == [manifest["keys"]["by_passphrase"][pf.name]], keys
        for snap in manifest["snapshots"]:
            target = work / f"verify-{i}-{snap['short_id']}.img"
            agent(pf, "restore", snap["id"], "--to", str(target))
            assert file_sha256(target) == snap["image_sha256"], snap
            target.unlink()
        rep = agent.json(pf, "check", "--read-data", "--json")
        assert rep["ok"] and not rep["errors"] and rep["packs_read"] == rep["packs"] == manifest["packs"], rep
    bad = work / "wrong"
    bad.write_text("not the passphrase\n")
    proc = agent(bad, "snapshots", "--json", expect=11)
    assert "wrong passphrase" in proc.stderr.lower(), proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=HERE, help="where repo/, manifest.json and the passphrases go")
    ap.add_argument("--keep-images", type=Path, help="also write the three night images into this directory")
    args = ap.parse_args()
    out: Path = args.out.resolve()
    if (out / "repo").exists() or (out / "manifest.json").exists():
        sys.exit(f"{out} already holds a golden repository; golden repositories are never regenerated "
                 "(README.md): write a new one next to it with --out")
    out.mkdir(parents=True, exist_ok=True)

    images = build_images()
    if args.keep_images:
        args.keep_images.mkdir(parents=True, exist_ok=True)
        for n, img in enumerate(images, 1):
            (args.keep_images / f"night{n}.img").write_bytes(img)

    with tempfile.TemporaryDirectory(prefix="agent-golden-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        passfiles = [work / "passphrase-1", work / "passphrase-2"]
        for pf, phrase in zip(passfiles, PASSPHRASES, strict=True):
            pf.write_text(phrase + "\n")
            pf.chmod(0o600)
        agent = Agent(repo, work / "cache")
        p1, p2 = passfiles

        agent(p1, "init", "--pack-size", str(PACK_SIZE_MIB), "--json")
        disk = work / "disk.img"  # one source path for all nights: each backup's parent is the previous night
        made = []
        for (when, tags), img in zip(NIGHTS, images, strict=True):
            disk.write_bytes(img)
            res = agent.json(p1, "backup", str(disk), "--time", when, "--host", HOST,
                             *[a for t in tags for a in ("--tag", t)], "--json")
            assert res["complete"] and res["snapshot_id"], res
            made.append(res["snapshot_id"])
        print(f"backed up {len(made)} nights: {', '.join(s[:8] for s in made)}")

        added = agent.json(p1, "key", "add", "--label", SECOND_KEY_LABEL, "--json",
                           extra_env={"AGENT_NEW_PASSPHRASE_FILE": str(p2)})["added"]

        forgot = agent.json(p1, "forget", *FORGET, "--json")
        assert forgot["remove"] == [made[FORGOTTEN]], forgot
        pruned = agent.json(p1, "prune", "--max-unused", "0%", "--json")
        print(f"prune: {pruned['packs_deleted']} pack(s) deleted, {pruned['packs_repacked']} repacked into "
              f"{pruned['packs_written']}, {pruned['bytes_freed']} bytes freed")
        if not (pruned["packs_deleted"] or pruned["packs_repacked"]):
            sys.exit(f"prune neither deleted nor repacked a pack; change the images: {pruned}")
        for d in ("locks", "runs"):  # nothing may be left behind but the format's own objects
            if (repo / d).exists() and any((repo / d).iterdir()):
                sys.exit(f"unexpected objects left in {d}/")
        remove_empty_dirs(repo)

        listing = agent.json(p1, "snapshots", "--json")["snapshots"]
        keys = {k["id"]: k for k in agent.json(p1, "key", "list", "--json")["keys"]}
        first_key = next(k for k in keys if k != added)
        check = agent.json(p1, "check", "--read-data", "--json")
        assert check["ok"], check
        remove_empty_dirs(repo)  # check's lock directory

        kept = [i for i in range(len(NIGHTS)) if i != FORGOTTEN]
        assert [s["id"] for s in listing] == [made[i] for i in kept], (listing, made)
        snapshots = []
        for i, s in zip(kept, listing, strict=True):
            when, tags = NIGHTS[i]
            assert (s["time"], s["host"], s["tags"], s["size"]) == (when, HOST, tags, len(images[i])), s
            snapshots.append({"id": s["id"], "short_id": s["short_id"], "night": i + 1, "time": s["time"],
                              "host": s["host"], "tags": s["tags"], "size": s["size"], "source": s["source"],
                              "parent": s["parent"], "image_sha256": sha256(images[i])})
        manifest = {
            "description": "golden repository: see README.md; written by make.py, never regenerated",
            "written_by": {"agent_version": agent_version(), "git_commit": git("rev-parse", "HEAD"),
                           "code_dirty": bool(git("--no-optional-locks", "status", "--porcelain", "--", "agent",
                                                  "crypto", "backends")),
                           "python": sys.version.split()[0]},
            "seed": SEED,
            "pack_size_mib": PACK_SIZE_MIB,
            "kdf": KDF,
            "snapshots": snapshots,
            "forgotten": {"id": made[FORGOTTEN], "night": FORGOTTEN + 1, "time": NIGHTS[FORGOTTEN][0],
                          "image_sha256": sha256(images[FORGOTTEN])},
            "keys": {"count": len(keys),
                     "by_passphrase": {"passphrase-1": first_key, "passphrase-2": added},
                     "labels": {k: v["label"] for k, v in keys.items()}},
            "packs": check["packs"],
            "chunks": check["chunks"],
            "prune": {k: pruned[k] for k in ("packs_before", "packs_deleted", "packs_repacked", "packs_written",
                                             "bytes_freed")},
        }
        verify(repo, manifest, passfiles, work)
        size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
        if size > MAX_REPO_BYTES:  # the chunker's seed comes from the random master key: sizes vary a little
            sys.exit(f"the repository came out at {size} bytes, over {MAX_REPO_BYTES}; make the images smaller")

        shutil.copytree(repo, out / "repo")
        for pf in passfiles:
            shutil.copyfile(pf, out / pf.name)
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    total = sum(p.stat().st_size for p in (out / "repo").rglob("*") if p.is_file())
    print(f"wrote {out}/repo ({total} bytes in {sum(1 for p in (out / 'repo').rglob('*') if p.is_file())} files), "
          f"manifest.json, passphrase-1, passphrase-2")


if __name__ == "__main__":
    main()
