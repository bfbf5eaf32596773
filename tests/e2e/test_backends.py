"""End to end through each network backend: the real CLI backs up a GPT disk twice to a local
server (moto, fake-gcs-server, sshd, smbd), then restores both days with --at, byte for byte.

The unit suites prove each backend keeps the storage contract; this proves the whole program,
configured only by a URL and the environment as a user would, works through it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.e2e.cycle import Days, Target, make_days, run_cycle


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}




@pytest.fixture(scope="module")
def days(tmp_path_factory) -> Days:
    return make_days(tmp_path_factory.mktemp("disk"), 24)


def s3_target(request) -> Target:
    boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = f"e2e-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)

    def stored() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="repo/")
        return {obj["Key"][len("repo/"):] for page in pages for obj in page.get("Contents", ())}

    return Target(f"s3://{bucket}/repo?endpoint={endpoint}&region=us-east-1", stored,
                  {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})


def gcs_target(request) -> Target:
    storage = pytest.importorskip("google.cloud.storage", reason="pip install 'agent-imagebackup[gcs]'")
    from google.auth.credentials import AnonymousCredentials

    endpoint = request.getfixturevalue("gcs_endpoint")
    bucket = f"e2e-{uuid.uuid4().hex[:16]}"
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": endpoint})
    client.create_bucket(bucket)

    def stored() -> set[str]:
        return {blob.name[len("repo/"):] for blob in client.list_blobs(bucket, prefix="repo/")}

    return Target(f"gs://{bucket}/repo?endpoint={endpoint}", stored)


def sftp_target(request) -> Target:
    pytest.importorskip("paramiko", reason="pip install 'agent-imagebackup[sftp]'")
    server = request.getfixturevalue("sshd_server")
    root = server.data_dir / uuid.uuid4().hex
    return Target(server.url(root), lambda: _files(root), {"SSH_AUTH_SOCK": ""})


def smb_target(request) -> Target:
    pytest.importorskip("smbclient", reason="pip install 'agent-imagebackup[smb]'")
    server = request.getfixturevalue("smbd_server")
    name = uuid.uuid4().hex
    return Target(server.url(f"/{name}"), lambda: _files(server.share_dir / name),
                  {"AGENT_SMB_PASSWORD": server.password})


TARGETS = {"s3": s3_target, "gs": gcs_target, "sftp": sftp_target, "smb": smb_target}


@pytest.fixture(params=sorted(TARGETS))
def target(request) -> Target:
    """A fresh, empty repository location on one backend's local server (started on first use)."""
    return TARGETS[request.param](request)


def test_backup_twice_and_restore_each_day_at(cli, days, target, tmp_path):
    run_cycle(cli, days, target, tmp_path)
