"""A real backup and restore through S3 while the network misbehaves, and clear, quick failures when
the problem is permanent.

The CLI talks to moto_server through tests/servers/faultproxy.py, which answers chosen requests
with 503 SlowDown, 429 or a TCP reset. Transient faults must cost time, never data: the backup
completes and reads back clean. Permanent ones (missing bucket, unknown or wrong credentials,
no write permission) must end `agent backup` within seconds with exit code 17 and one line
that says what is wrong, not after a retry loop and not with a traceback.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from urllib.parse import urlsplit

import pytest

from tests.diskimage import MissingTool, build_sample_image
from tests.servers.faultproxy import S3_SLOWDOWN, Fault, FaultProxy
from tests.servers.moto import moto_api, start_moto

boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
TOO_MANY = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>TooManyRequests</Code>'
            b"<Message>Please slow down.</Message></Error>")


def s3_client(endpoint: str, key: str = "testing", secret: str = "testing"):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret)


def new_bucket(endpoint: str) -> str:
    name = f"faults-{uuid.uuid4().hex[:16]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


def s3_url(endpoint: str, bucket: str) -> str:
    return f"s3://{bucket}/repo?endpoint={endpoint}"


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("disk")
    try:
        return build_sample_image(tmp / "disk.img", size_mib=24, esp_mib=4).path
    except MissingTool as exc:
        pytest.skip(str(exc))


def _faults_then_success(proxy: FaultProxy, pattern: str) -> list[tuple[str, str]]:
    """The faulted requests matching `pattern`, after checking each was later sent again and passed."""
    log = proxy.requests(pattern)
    faulted = [(i, line, kind) for i, (line, kind) in enumerate(log) if kind != "pass"]
    for i, line, kind in faulted:
        assert (line, "pass") in log[i + 1:], f"{kind} on {line} was never retried to success"
    return [(line, kind) for _, line, kind in faulted]


def test_backup_and_restore_survive_throttling_and_resets(cli, disk, moto_endpoint, tmp_path):
    bucket = new_bucket(moto_endpoint)
    with FaultProxy(urlsplit(moto_endpoint).port) as proxy:
        cli.env.update(CREDS, AGENT_REPO=s3_url(proxy.url, bucket))
        cli("init", "--pack-size", "1")  # small packs: many PUTs and GETs to hit
        repo = rf" /{bucket}/repo/"
        proxy.add(Fault("status", 503, S3_SLOWDOWN, match=rf"^PUT{repo}data/", times=2),
                  Fault("status", 429, TOO_MANY, headers=(("Retry-After", "1"),), match=rf"^PUT{repo}data/"),
                  Fault("reset", match=rf"^PUT{repo}data/", times=2),
                  Fault("status", 503, S3_SLOWDOWN, match=rf"^PUT{repo}index/"),
                  Fault("status", 503, S3_SLOWDOWN, match=rf"^PUT{repo}snapshots/"),
                  Fault("reset", match=rf"^GET{repo}(config|keys/)"),
                  Fault("status", 503, S3_SLOWDOWN, match=rf"^GET{repo}(config|keys/)"))
        made = cli("backup", str(disk), "--time", "2024-05-01T12:00:00Z", "--json").json()
        assert made["new_chunks"] > 0
        hit = _faults_then_success(proxy, "")
        assert sorted(kind for _, kind in hit) == ["reset"] * 3 + ["status"] * 6
        assert {line.split()[1].split("/")[3] for line, _ in hit} == {"data", "index", "snapshots", "config"}

        proxy.clear()
        proxy.add(Fault("status", 503, S3_SLOWDOWN, match=rf"^GET{repo}data/"),
                  Fault("status", 429, TOO_MANY, headers=(("Retry-After", "1"),), match=rf"^GET{repo}data/"),
                  Fault("reset", match=rf"^GET{repo}data/"))
        cli("restore", "--at", "2024-05-01", "--to", str(tmp_path / "restored.img"))
        assert len(_faults_then_success(proxy, rf"^GET{repo}data/")) == 3
        assert (tmp_path / "restored.img").read_bytes() == disk.read_bytes()

        proxy.clear()
        checked = cli("check", "--read-data", "--json").json()
        assert checked["errors"] == [] and checked["packs_read"] == checked["packs"] > 1
        assert [kind for _, kind in proxy.requests()] == ["pass"] * len(proxy.requests())


def _fails_fast_and_clearly(cli, disk, *, expect: str, env: dict | None = None) -> None:
    started = time.monotonic()
    res = cli("backup", str(disk), check=False, env=env, timeout=60)
    elapsed = time.monotonic() - started
    assert res.code == 17, res.err
    assert elapsed < 10, f"took {elapsed:.1f}s to give up on a permanent error"
    assert "Traceback" not in res.err
    errors = [line for line in res.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.search(expect, errors[0]), res.err
    assert "wrong-secret" not in res.err


def test_missing_bucket_fails_fast(cli, disk, moto_endpoint):
    cli.env.update(CREDS, AGENT_REPO=s3_url(moto_endpoint, f"missing-{uuid.uuid4().hex[:12]}"))
    _fails_fast_and_clearly(cli, disk, expect=r"bucket 'missing-[0-9a-f]+' does not exist")


@pytest.fixture(scope="module")
def iam_moto():
    """A private moto_server checking IAM (a server-wide switch), with a repository in `bucket`
    and two users: `writer` may do everything a backup needs, `reader` may only read."""
    server = start_moto()
    try:
        endpoint = server.url
        bucket = new_bucket(endpoint)
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                           aws_secret_access_key="testing")
        users = {}
        for name, actions in (("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket"])):
            iam.create_user(UserName=name)
            arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [
                    f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
            key = iam.create_access_key(UserName=name)["AccessKey"]
            users[name] = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
        moto_api(endpoint, "/moto-api/reset-auth", b"0")  # check every request from now on
        yield endpoint, bucket, users
    finally:
        server.stop()


@pytest.fixture
def iam_repo(cli, iam_moto):
    endpoint, bucket, users = iam_moto
    prefix = uuid.uuid4().hex[:12]
    cli.env.update(CREDS, AGENT_REPO=f"s3://{bucket}/{prefix}?endpoint={endpoint}")
    cli("init", env=users["writer"])
    return users


def test_unknown_access_key_fails_fast(cli, disk, iam_repo):
    _fails_fast_and_clearly(cli, disk, expect="rejected the credentials.*InvalidAccessKeyId",
                            env={"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000", "AWS_SECRET_ACCESS_KEY": "testing"})


def test_wrong_secret_fails_fast(cli, disk, iam_repo):
    _fails_fast_and_clearly(cli, disk, expect="rejected the credentials.*SignatureDoesNotMatch",
                            env={**iam_repo["writer"], "AWS_SECRET_ACCESS_KEY": "wrong-secret"})


def test_read_only_credentials_fail_fast(cli, disk, iam_repo):
    cli("snapshots", env=iam_repo["reader"])  # reading is allowed: the credentials do work
    _fails_fast_and_clearly(cli, disk, expect="permission denied.*AccessDenied", env=iam_repo["reader"])
    cli("backup", str(disk), env=iam_repo["writer"])  # nothing was left behind in the way
