"""Fixtures of the copy tests: four nights of one small GPT disk (real FAT and ext4, changed as a
user would between backups) and a source repository A holding the first three."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.diskimage import MissingTool, build_sample_image, change_image, copy_sparse

TIMES = ["2024-05-01T02:00:00Z", "2024-05-02T02:00:00Z", "2024-05-03T02:00:00Z", "2024-05-04T02:00:00Z"]
DAYS = ["2024-05-01", "2024-05-02", "2024-05-03", "2024-05-04"]


@pytest.fixture(scope="package")
def nights(tmp_path_factory) -> list[Path]:
    """Four versions of one 32 MiB disk, one night of use apart."""
    tmp = tmp_path_factory.mktemp("nights")
    paths = [tmp / f"night{i}.img" for i in range(4)]
    try:
        info = build_sample_image(paths[0], size_mib=32, esp_mib=4)
        for i in range(1, 4):
            shutil.copyfile(paths[i - 1], paths[i])
            change_image(paths[i], info, seed=i)
    except MissingTool as exc:
        pytest.skip(str(exc))
    return paths


def back_up(cli, nights: list[Path], disk: Path, night: int) -> dict:
    """Night `night` of the disk backed up from one path (so the nights form one chain)."""
    disk.unlink(missing_ok=True)
    copy_sparse(nights[night], disk, 0, length=nights[night].stat().st_size)
    return cli("backup", str(disk), "--time", TIMES[night], "--json").json()


@dataclass
class Target:
    url: str
    env: dict
    packs: object  # () -> set of pack names as the server holds them


@pytest.fixture
def s3_target(request) -> Target:
    boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"copy-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)

    def packs() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="b/data/")
        return {obj["Key"].rsplit("/", 1)[-1] for page in pages for obj in page.get("Contents", ())}

    return Target(f"s3://{bucket}/b?endpoint={endpoint}&region=us-east-1",
                  {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}, packs)


@pytest.fixture
def sftp_target(request) -> Target:
    pytest.importorskip("paramiko", reason="pip install 'agent-imagebackup[sftp]'")
    server = request.getfixturevalue("sshd_server")
    root = server.data_dir / uuid.uuid4().hex
    return Target(server.url(root), {"SSH_AUTH_SOCK": ""},
                  lambda: {p.name for p in (root / "data").rglob("*") if p.is_file()})
