"""The single-file executable restores byte for byte on a system without Python (marker `dist`).

`make dist` builds it (build/single-file/agent); `make dist-check` runs this. The repository and backups
are made outside with the checkout's agent; only the restore runs inside a Debian minbase chroot, with
nothing but the executable copied in: from a local repository inside the chroot, and from S3, GCS, SFTP
and SMB ones (moto, fake-gcs-server, sshd, smbd on loopback: a chroot shares the host's network).
Needs root for chroot.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.distribution.chroot import minbase_chroot, run_in

pytestmark = pytest.mark.dist

ROOT = Path(__file__).resolve().parents[2]
MARKER = "single-file marker: rescue 2026"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


@pytest.fixture(scope="module")
def executable() -> Path:
    path = Path(os.environ.get("AGENT_SINGLE_FILE", ROOT / "build/single-file/agent"))
    if not path.is_absolute():
        path = ROOT / path
    if not path.exists():
        pytest.fail(f"{path} is missing: build it with `make dist` (`make dist-check` does both)")
    return path


@pytest.fixture(scope="module")
def chroot() -> Path:
    if os.geteuid() != 0:
        pytest.fail("chroot needs root: run `make dist-check` as root")
    cache = Path(os.environ.get("AGENT_DIST_CACHE", Path.home() / ".cache/agent-dist"))
    return minbase_chroot(cache)


@pytest.fixture
def inside(chroot, executable):
    """A private directory inside the chroot holding the executable: (path outside, path inside)."""
    name = f"agent-test-{uuid.uuid4().hex[:12]}"
    outside = chroot / "tmp" / name
    outside.mkdir(mode=0o700)
    shutil.copy2(executable, outside / "agent")
    try:
        yield outside, f"/tmp/{name}"
    finally:
        shutil.rmtree(outside)


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("disk") / "disk.img"
    subprocess.run([sys.executable, "-m", "tests.diskimage", "build", str(path), "--size-mib", "32",
                    "--marker", MARKER], check=True, cwd=ROOT, capture_output=True)
    return path


def test_the_chroot_has_no_python(chroot):
    assert run_in(chroot, "python3", "--version").returncode != 0
    assert not list((chroot / "usr/bin").glob("python*"))


def test_the_executable_knows_its_version(chroot, inside):
    from agent import __version__

    _, where = inside
    res = run_in(chroot, f"{where}/agent", "--version", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"event": "version", "version": __version__, "format_version": 1,
                                      "python": json.loads(res.stdout)["python"]}


def _restore_inside(chroot: Path, where: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_in(chroot, f"{where}/agent", "restore", "latest", "--to", f"{where}/restored.img",
                  env={"AGENT_PASSPHRASE_FILE": f"{where}/passphrase", "AGENT_CACHE_DIR": f"{where}/cache", **env})


def test_restores_from_a_local_repository(chroot, inside, disk, tmp_path):
    outside, where = inside
    cli = Cli(tmp_path)
    cli.env["AGENT_REPO"] = str(outside / "repo")  # made from outside, read inside at {where}/repo
    cli("init")
    cli("backup", str(disk))
    shutil.copy2(cli.passfile, outside / "passphrase")
    res = _restore_inside(chroot, where, {"AGENT_REPO": f"{where}/repo"})
    assert res.returncode == 0, res.stderr
    subprocess.run(["cmp", str(disk), str(outside / "restored.img")], check=True)


def test_restores_from_s3(chroot, inside, disk, tmp_path, moto_endpoint):
    boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    outside, where = inside
    bucket = f"dist-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/repo?endpoint={moto_endpoint}&region=us-east-1"
    cli = Cli(tmp_path)
    cli.env.update(AGENT_REPO=url, **S3_ENV)
    cli("init")
    cli("backup", str(disk))
    shutil.copy2(cli.passfile, outside / "passphrase")
    res = _restore_inside(chroot, where, {"AGENT_REPO": url, **S3_ENV})
    assert res.returncode == 0, res.stderr
    subprocess.run(["cmp", str(disk), str(outside / "restored.img")], check=True)


@pytest.mark.parametrize("kind", ["gcs", "sftp", "smb"])
def test_restores_from_the_other_bundled_backends(chroot, inside, disk, tmp_path, request, kind):
    """GCS, SFTP and SMB too (fake-gcs-server, sshd, smbd on loopback): their SDKs are in the file."""
    from tests.e2e.test_backends import gcs_target, sftp_target, smb_target

    outside, where = inside
    target = {"gcs": gcs_target, "sftp": sftp_target, "smb": smb_target}[kind](request)
    url = target.url
    if kind == "sftp":  # the client key and known_hosts, copied in and named by their paths inside
        server = request.getfixturevalue("sshd_server")
        shutil.copy2(server.key_file, outside / "key")
        shutil.copy2(server.known_hosts, outside / "known_hosts")
        url = url.split("?")[0] + f"?key={where}/key&known_hosts={where}/known_hosts"
    cli = Cli(tmp_path)
    cli.env.update(AGENT_REPO=target.url, **target.env)
    cli("init")
    cli("backup", str(disk))
    shutil.copy2(cli.passfile, outside / "passphrase")
    res = _restore_inside(chroot, where, {"AGENT_REPO": url, **target.env})
    assert res.returncode == 0, res.stderr
    subprocess.run(["cmp", str(disk), str(outside / "restored.img")], check=True)


def test_size_and_start_up_time(chroot, inside, executable):
    """The numbers docs/install.md quotes: size, and `agent --help` wall time (median of 5) in the chroot."""
    _, where = inside
    times = []
    for _ in range(5):
        start = time.monotonic()
        res = run_in(chroot, f"{where}/agent", "--help")
        times.append(time.monotonic() - start)
        assert res.returncode == 0 and "Usage: agent" in res.stdout, res.stderr
    size = executable.stat().st_size
    print(f"single-file executable: {size / (1 << 20):.1f} MiB, `agent --help` median {statistics.median(times):.2f} s")
    assert size < 80 << 20  # a rescue stick or an initramfs-sized download, not a second distribution
