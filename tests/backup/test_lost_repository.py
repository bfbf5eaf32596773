"""No silent success: a backup whose lock was removed, or whose repository vanished, while it ran
fails loudly and writes no snapshot (a prune may have deleted what it uploaded)."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest


def _slow_backup(cli, tmp_path: Path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(12 << 20))
    cli("init", "--pack-size", "1")
    proc = cli.popen("backup", str(img), "--limit-upload", "1MiB/s")
    locks = cli.repo / "locks"
    deadline = time.monotonic() + 30
    while not (locks.is_dir() and any(locks.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(1.0)  # some packs uploaded
    assert proc.poll() is None, "the backup finished before the interference; slow it down further"
    return proc


def test_lock_removed_during_the_backup(cli, tmp_path):
    proc = _slow_backup(cli, tmp_path)
    assert cli("unlock", "--remove-all").code == 0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 13, (out, err)
    assert b"lock was removed while it ran" in err and b"no snapshot was written" in err
    assert b"snapshot saved" not in out + err
    assert cli("snapshots", "--json").json()["snapshots"] == []


def test_repository_emptied_during_the_backup(cli, tmp_path):
    proc = _slow_backup(cli, tmp_path)
    keep = tmp_path / "moved"
    shutil.move(cli.repo, keep)  # the bucket emptied, the share unmounted
    cli.repo.mkdir()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, (out, err)
    assert b"internal error" not in err and b"Traceback" not in err
    assert b"disappeared while this run worked" in err, err
    assert sorted(p.name for p in cli.repo.rglob("*") if "snapshots" in p.parts) == []


def test_lock_removed_and_pruned_during_the_backup(cli, tmp_path):
    """The interleaving that makes it dangerous: the prune deletes what the backup uploaded so far
    (nothing references it yet); a snapshot written after that would name missing packs."""
    proc = _slow_backup(cli, tmp_path)
    assert cli("unlock", "--remove-all").code == 0
    assert cli("prune", "--lock-wait", "0").code == 0
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 13, (out, err)
    assert b"no snapshot was written" in err and b"snapshot saved" not in out + err
    assert cli("snapshots", "--json").json()["snapshots"] == []
    assert cli("check").code == 0


def test_s3_bucket_emptied_during_the_backup(cli, tmp_path, moto_endpoint):
    boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    bucket = f"lost-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    cli.env.update(AGENT_REPO=f"s3://{bucket}/repo?endpoint={moto_endpoint}&region=us-east-1",
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_CONFIG_FILE="/nonexistent",
                   AWS_SHARED_CREDENTIALS_FILE="/nonexistent")

    def keys(prefix: str = "repo/") -> list[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(12 << 20))
    cli("init", "--pack-size", "1")
    proc = cli.popen("backup", str(img), "--limit-upload", "1MiB/s")
    deadline = time.monotonic() + 30
    while not keys("repo/data/"):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    for key in keys():  # someone empties the bucket
        client.delete_object(Bucket=bucket, Key=key)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, (out, err)
    assert b"internal error" not in err and b"Traceback" not in err
    assert b"disappeared while this run worked" in err or b"lock was removed" in err, err
    assert b"snapshot saved" not in out + err
    assert not keys("repo/snapshots/")
