"""`agent ls` and `agent extract` on real filesystems built by their own tools: every extracted file
is byte-identical and keeps mode and mtime, symlinks stay symlinks, sparse files stay sparse, and
the listing is exactly the tree that was written."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

MTIME = 1_700_000_000  # 2023-11-14: a time the backup run cannot produce by accident


def _tree(src: Path) -> None:
    """Regular files of several modes, a directory tree, a symlink, a sparse file, a file over 100 MiB."""
    (src / "etc" / "nginx" / "sites").mkdir(parents=True)
    (src / "etc" / "nginx" / "nginx.conf").write_text("worker_processes 2;\n")
    (src / "etc" / "nginx" / "sites" / "default").write_text("server { listen 80; }\n" * 50)
    (src / "etc" / "secret.key").write_bytes(os.urandom(4096))
    (src / "etc" / "secret.key").chmod(0o600)
    (src / "bin").mkdir()
    (src / "bin" / "tool.sh").write_text("#!/bin/sh\necho hi\n")
    (src / "bin" / "tool.sh").chmod(0o755)
    (src / "etc" / "current").symlink_to("nginx/nginx.conf")
    with open(src / "sparse.img", "wb") as f:
        f.seek(20 << 20)
        f.write(b"end of a sparse file\n")
    with open(src / "big.bin", "wb") as f:
        for _ in range(101):
            f.write(os.urandom(1 << 20))
    for p in sorted(src.rglob("*"), reverse=True):
        os.utime(p, (MTIME, MTIME), follow_symlinks=False)


@pytest.fixture(scope="module")
def ext4(tmp_path_factory) -> tuple[Path, Path]:
    if not shutil.which("mke2fs"):
        pytest.skip("mke2fs not installed (e2fsprogs)")
    d = tmp_path_factory.mktemp("ext4")
    src = d / "src"
    src.mkdir()
    _tree(src)
    image = d / "fs.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(src), "-E", "root_owner=0:0", str(image), "192M"],
                   check=True)
    return src, image


def _listed(cli, spec: str) -> dict[str, dict]:
    return {e["path"]: e for e in cli("ls", spec, "-R", "--json").json()["entries"]}


def _expected(src: Path) -> dict[str, Path]:
    return {"/" + str(p.relative_to(src)): p for p in src.rglob("*")}


def test_ext4_lists_exactly_the_tree_and_extracts_every_file_identically(cli, tmp_path, ext4):
    src, image = ext4
    cli("init")
    cli("backup", str(image))
    listed = _listed(cli, "latest:/")
    listed.pop("/lost+found")
    assert set(listed) == set(_expected(src))
    for path, p in _expected(src).items():
        e = listed[path]
        st = p.lstat()
        assert e["type"] == {True: "symlink"}.get(p.is_symlink(), "dir" if p.is_dir() else "file"), path
        assert int(e["mode"], 8) == stat.S_IMODE(st.st_mode) or p.is_symlink(), path
        if not p.is_dir():
            assert e["size"] == st.st_size, path

    res = cli("extract", "latest:/", "--to", str(tmp_path / "out"), "--json").json()
    assert res["failed"] == [] and res["files"] == 6 and res["symlinks"] == 1
    out = tmp_path / "out"
    for path, p in _expected(src).items():
        q = out / path.lstrip("/")
        assert q.is_symlink() == p.is_symlink(), path
        if p.is_symlink():
            assert os.readlink(q) == os.readlink(p)
            continue
        st, qt = p.stat(), q.stat()
        assert stat.S_IMODE(qt.st_mode) == stat.S_IMODE(st.st_mode), path
        assert int(qt.st_mtime) == MTIME, path
        if p.is_file():
            assert q.read_bytes() == p.read_bytes(), path
    sparse = out / "sparse.img"
    assert sparse.stat().st_blocks * 512 < 1 << 20, "the sparse file was written out in full"


def test_extract_one_file_and_one_directory(cli, tmp_path, ext4):
    src, image = ext4
    cli("init")
    cli("backup", str(image))
    cli("extract", "latest:/etc/nginx", "--to", str(tmp_path / "a"))
    assert (tmp_path / "a" / "nginx" / "sites" / "default").read_bytes() == \
        (src / "etc" / "nginx" / "sites" / "default").read_bytes()
    cli("extract", "latest:/etc/secret.key", "--to", str(tmp_path / "b"))
    assert (tmp_path / "b" / "secret.key").read_bytes() == (src / "etc" / "secret.key").read_bytes()
    one = cli("ls", "latest:/etc/secret.key", "--json").json()["entries"]
    assert [e["name"] for e in one] == ["secret.key"] and one[0]["mode"] == "0600"


def test_listing_a_directory_fetches_a_small_part_of_the_image(cli, tmp_path, ext4):
    _, image = ext4
    cli("init")
    cli("backup", str(image))
    res = cli("ls", "latest:/etc", "--json").json()
    assert {e["name"] for e in res["entries"]} == {"nginx", "secret.key", "current"}
    assert res["fetched_bytes"] < 16 << 20, res["fetched_bytes"]  # of a 192 MiB image holding 121 MiB


def test_fat_built_by_mkfs_vfat_and_mcopy(cli, tmp_path):
    if not (shutil.which("mkfs.vfat") and shutil.which("mcopy")):
        pytest.skip("mkfs.vfat or mcopy not installed (dosfstools, mtools)")
    src = tmp_path / "src"
    (src / "EFI" / "BOOT").mkdir(parents=True)
    (src / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(os.urandom(300_000))
    (src / "README.TXT").write_text("hello from FAT\n")
    image = tmp_path / "fat.img"
    subprocess.run(["mkfs.vfat", "-C", "-n", "ESP", str(image), str(32 * 1024)], check=True, capture_output=True)
    subprocess.run(["mcopy", "-s", "-i", str(image), str(src / "EFI"), str(src / "README.TXT"), "::/"], check=True)
    cli("init")
    cli("backup", str(image))
    listed = _listed(cli, "latest:/")
    assert set(listed) == {"/EFI", "/EFI/BOOT", "/EFI/BOOT/BOOTX64.EFI", "/README.TXT"}
    cli("extract", "latest:/", "--to", str(tmp_path / "out"))
    for name in ("EFI/BOOT/BOOTX64.EFI", "README.TXT"):
        assert (tmp_path / "out" / name).read_bytes() == (src / name).read_bytes()


def test_partitions_of_a_gpt_disk_by_number_label_and_name(cli, tmp_path):
    from tests.diskimage import MissingTool, build_sample_image

    try:
        info = build_sample_image(tmp_path / "disk.img", marker=b"granular restore marker")
    except MissingTool as exc:
        pytest.skip(str(exc))
    cli("init")
    cli("backup", str(tmp_path / "disk.img"))
    parts = cli("ls", "latest", "--json").json()["partitions"]
    assert [(p["number"], p["filesystem"]) for p in parts] == [(1, "vfat"), (2, "ext4")]
    human = cli("ls", "latest").out
    assert "p1" in human and "'ESP'" in human and "ext4" in human
    marker = info.marker_path
    assert marker
    for spec in (f"latest:2:{marker}", f"latest:root:{marker}"):
        out = tmp_path / spec.replace(":", "_").replace("/", "_")
        cli("extract", spec, "--to", str(out))
        assert b"granular restore marker" in (out / Path(marker).name).read_bytes()
    assert cli("ls", "latest:ESP:/EFI/BOOT", "--json").json()["filesystem"] == "fat"


def test_bad_input_is_one_clear_line(cli, tmp_path, ext4):
    _, image = ext4
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(4 << 20))
    cli("init")
    cli("backup", str(image), "--tag", "fs")
    res = cli("ls", "latest:/no/such/dir", check=False)
    assert res.code == 2 and "/no/such/dir does not exist" in res.err
    res = cli("extract", "latest:/etc/nope", "--to", str(tmp_path / "o"), check=False)
    assert res.code == 2 and "does not exist" in res.err
    cli("backup", str(junk))
    res = cli("ls", "latest:/etc", check=False)  # two sources now: latest of which? (docs/restore.md)
    assert res.code == 2 and "choose with --host and --source" in res.err
    res = cli("ls", "latest:/etc", "--source", str(junk), check=False)
    assert res.code == 19 and "no filesystem that can be browsed" in res.err and "restore" in res.err
    assert "Traceback" not in res.err
    res = cli("ls", "nosuchsnap:/", check=False)
    assert res.code == 18


def test_a_damaged_chunk_fails_only_the_file_on_it(cli, tmp_path, ext4):
    src, image = ext4
    cli("init", "--pack-size", "4")
    cli("backup", str(image))
    # the biggest pack holds mostly big.bin's random chunks: damage one in its middle
    packs = sorted((p for p in (cli.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(packs[-1].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    packs[-1].write_bytes(bytes(raw))
    res = cli("extract", "latest:/", "--to", str(tmp_path / "out"), "--json", check=False)
    assert res.code == 3, res.err
    failed = res.json()["failed"]
    assert len(failed) == 1 and failed[0].startswith("/big.bin: ") and "bytes" in failed[0], failed
    for name in ("etc/nginx/nginx.conf", "bin/tool.sh", "etc/secret.key"):
        assert (tmp_path / "out" / name).read_bytes() == (src / name).read_bytes()
    assert "Traceback" not in res.err


def test_ls_and_extract_as_an_unprivileged_user(cli, tmp_path, ext4):
    """No root needed: a user who can read the repository and the passphrase browses it."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root to switch to an unprivileged user with setpriv")
    src, image = ext4
    shared = Path(tempfile.mkdtemp(prefix="agent-unpriv-"))
    try:
        shared.chmod(0o755)
        repo = shared / "repo"
        cli("init", env={"AGENT_REPO": str(repo)})
        cli("backup", str(image), env={"AGENT_REPO": str(repo)})
        pw = shared / "pw"
        shutil.copy(cli.passfile, pw)
        out = shared / "out"
        out.mkdir()
        subprocess.run(["chown", "-R", "65534:65534", str(out), str(pw)], check=True)
        subprocess.run(["chmod", "-R", "a+rX", str(repo)], check=True)
        env = {**cli.env, "AGENT_REPO": str(repo), "AGENT_PASSPHRASE_FILE": str(pw), "AGENT_CACHE_DIR": "off",
               "HOME": str(out)}
        run = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "agent"]
        ls = subprocess.run([*run, "ls", "latest:/etc", "--json"], env=env, capture_output=True, text=True)
        assert ls.returncode == 0, ls.stderr
        assert "read-only for this user: reading without a lock" in ls.stderr, ls.stderr
        assert {e["name"] for e in json.loads(ls.stdout.splitlines()[-1])["entries"]} == {"nginx", "secret.key",
                                                                                         "current"}
        ex = subprocess.run([*run, "extract", "latest:/etc", "--to", str(out)], env=env, capture_output=True,
                            text=True)
        assert ex.returncode == 0, ex.stderr
        conf = out / "etc" / "nginx" / "nginx.conf"
        assert conf.read_bytes() == (src / "etc" / "nginx" / "nginx.conf").read_bytes()
        assert conf.stat().st_uid == 65534
    finally:
        shutil.rmtree(shared)


def test_ntfs_built_by_mkntfs_and_ntfscp(cli, tmp_path):
    if not (shutil.which("mkntfs") and shutil.which("ntfscp")):
        pytest.skip("mkntfs or ntfscp not installed (ntfs-3g)")
    image = tmp_path / "ntfs.img"
    with open(image, "wb") as f:
        f.truncate(48 << 20)
    subprocess.run(["mkntfs", "-q", "-F", "-Q", "-L", "DATA", str(image)], check=True, capture_output=True)
    files = {"report.docx": os.urandom(700_000), "notes.txt": b"quarterly numbers\r\n" * 100}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        subprocess.run(["ntfscp", "-q", str(image), str(tmp_path / name), name], check=True, capture_output=True)
    cli("init")
    cli("backup", str(image))
    listing = cli("ls", "latest:/", "--json").json()
    assert listing["filesystem"] == "ntfs"
    assert {e["name"] for e in listing["entries"]} == set(files)  # NTFS metafiles ($MFT, ...) are hidden
    cli("extract", "latest:/notes.txt", "--to", str(tmp_path / "out"))
    cli("extract", "latest:/report.docx", "--to", str(tmp_path / "out"))
    for name, data in files.items():
        assert (tmp_path / "out" / name).read_bytes() == data


def test_exfat_built_by_mkfs_exfat_is_recognised(cli, tmp_path):
    """exfatprogs makes the filesystem; nothing here can write files into it without a kernel driver or
    a FUSE one, so this shows the reader opens it and lists its (empty) root."""
    if not shutil.which("mkfs.exfat"):
        pytest.skip("mkfs.exfat not installed (exfatprogs)")
    image = tmp_path / "exfat.img"
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.exfat", "-L", "CARD", str(image)], check=True, capture_output=True)
    cli("init")
    cli("backup", str(image))
    listing = cli("ls", "latest:/", "--json").json()
    assert listing["filesystem"] == "exfat" and listing["entries"] == []


def test_ls_and_extract_wait_for_a_prune_and_say_so(cli, tmp_path, ext4):
    """They read packs, so they hold a shared lock: while a prune (exclusive) runs they wait, then
    give the lock error; they never read under a prune."""
    from agent.repo.cache import ObjectCache
    from agent.repo.repository import Repository
    from backends.local import LocalBackend

    _, image = ext4
    cli("init")
    cli("backup", str(image))
    repo = Repository.open(LocalBackend(cli.repo), cli.passfile.read_bytes().strip(), cache=ObjectCache(None))
    try:
        with repo.lock(exclusive=True, command="prune"):
            for args in (("ls", "latest:/etc"), ("extract", "latest:/etc", "--to", str(tmp_path / "o"))):
                res = cli(*args, "--lock-wait", "1", check=False)
                assert res.code == 13 and "prune" in res.err and "Traceback" not in res.err, res.err
        assert cli("ls", "latest:/etc", "--lock-wait", "0").code == 0
    finally:
        repo.close()
