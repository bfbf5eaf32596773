"""`agent doctor` through the real CLI: every check against a local directory, S3 (moto) and GCS
(fake-gcs-server); repository objects untouched; no passphrase needed; failures named, exit 17.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from tests.servers.moto import moto_api, start_moto

CHECKS = ["repository", "write", "read", "range read", "list", "create", "latency", "throughput", "delete"]
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
NO_PASSPHRASE = {"AGENT_PASSPHRASE_FILE": ""}  # stdin is no terminal either: asking for one would fail


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _all_passed(report: dict) -> None:
    assert report["ok"] is True and report["failed"] is None, report
    assert [c["name"] for c in report["checks"]] == CHECKS
    assert {c["status"] for c in report["checks"]} == {"ok"}, report["checks"]
    assert report["latency_ms"]["rounds"] == 5 and report["latency_ms"]["median"] > 0
    assert report["throughput"]["bytes"] == 1 << 20 and report["throughput"]["download_bytes_per_s"] > 0


def _report(res) -> dict:
    """The doctor event (a failed check is followed by an error event)."""
    return next(e for e in map(json.loads, res.out.splitlines()) if e["event"] == "doctor")


# -- local directory ------------------------------------------------------------------------------

def test_local_target_without_repository(cli):
    res = cli("doctor", "--json", "--size", "1", env=NO_PASSPHRASE)
    report = _report(res)
    _all_passed(report)
    assert report["location"] == str(cli.repo) and report["repository"] == {"exists": False}
    assert report["capabilities"]["conditional_put"] is True and report["capabilities"]["object_lock"] is False
    assert _files(cli.repo) == {}  # the probe cleaned up after itself
    assert [p.name for p in cli.repo.iterdir()] == ["doctor"]


def test_local_repository_is_reported_and_left_untouched(cli, tmp_path):
    created = cli("init", "--json").json()
    source = tmp_path / "small.img"
    source.write_bytes(os.urandom(1 << 20))
    cli("backup", str(source))
    before = _files(cli.repo)
    res = cli("doctor", env=NO_PASSPHRASE)
    assert _files(cli.repo) == before
    assert f"repository {created['repository'][:8]} (format 1)" in res.out
    for name in CHECKS:
        assert name in res.out
    assert "all checks passed" in res.out and "failed" not in res.out
    assert cli("check", "--read-data").code == 0


def test_local_target_that_cannot_exist_fails_with_a_named_check(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"not a directory")
    res = cli("doctor", check=False, env={**NO_PASSPHRASE, "AGENT_REPO": str(blocker / "repo")})
    assert res.code == 17, res.err
    assert "error: check 'repository' failed on " in res.err and "hint: check the URL" in res.err
    assert "Traceback" not in res.err
    assert blocker.read_bytes() == b"not a directory"


def test_unknown_scheme_fails_the_open_check(cli):
    res = cli("doctor", "--json", check=False, env={"AGENT_REPO": "ftp://host/repo"})
    report = _report(res)
    assert res.code == 17 and report["failed"] == "open" and "known: " in report["error"]
    error = res.json()  # the report, then the failure as the last line, as every command's error
    assert error["event"] == "error" and error["code"] == 17 and error["kind"] == "storage_error"


# -- S3 (moto) and GCS (fake-gcs-server) ----------------------------------------------------------

def _s3_bucket(endpoint: str) -> tuple[object, str]:
    boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    bucket = f"doctor-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


def _objects(client, bucket: str) -> dict[str, str]:
    return {o["Key"]: o["ETag"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", ())}


def test_s3_all_checks_pass_beside_a_live_repository(cli, moto_endpoint):
    client, bucket = _s3_bucket(moto_endpoint)
    cli.env.update(AWS, AGENT_REPO=f"s3://{bucket}/repo?endpoint={moto_endpoint}")
    report = cli("doctor", "--json", "--size", "1", env=NO_PASSPHRASE).json()
    _all_passed(report)
    assert report["location"] == f"s3://{bucket}/repo/ at {moto_endpoint}"
    assert report["url"] == f"s3://{bucket}/repo?endpoint={moto_endpoint}"
    assert report["repository"] == {"exists": False}
    assert _objects(client, bucket) == {}

    repo_id = cli("init", "--json").json()["repository"]
    before = _objects(client, bucket)
    report = cli("doctor", "--json", "--size", "1", env=NO_PASSPHRASE).json()
    _all_passed(report)
    assert report["repository"] == {"exists": True, "id": repo_id, "version": 1}
    assert _objects(client, bucket) == before


def test_s3_missing_bucket_fails(cli, moto_endpoint):
    pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    cli.env.update(AWS, AGENT_REPO=f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/repo?endpoint={moto_endpoint}")
    res = cli("doctor", check=False, env=NO_PASSPHRASE)
    assert res.code == 17 and "does not exist" in res.err and "Traceback" not in res.err


def test_s3_wrong_credentials_fail_fast_and_clearly(cli):
    """A private moto_server that checks every request's signature (a server-wide switch)."""
    server = start_moto()
    try:
        _, bucket = _s3_bucket(server.url)
        moto_api(server.url, "/moto-api/reset-auth", b"0")
        cli.env.update(AWS, AGENT_REPO=f"s3://{bucket}/repo?endpoint={server.url}",
                       AWS_ACCESS_KEY_ID="AKIANOSUCHKEY0000000", AWS_SECRET_ACCESS_KEY="wrong-secret")
        started = time.monotonic()
        res = cli("doctor", "--json", check=False, env=NO_PASSPHRASE)
        assert time.monotonic() - started < 10
    finally:
        server.stop()
    assert res.code == 17, res.err
    report = _report(res)
    assert report["ok"] is False and report["failed"] == "repository"
    assert "InvalidAccessKeyId" in report["error"]
    assert report["hint"].startswith("check the credentials")
    assert [c["status"] for c in report["checks"]] == ["failed"] + ["skipped"] * (len(CHECKS) - 1)
    assert res.err.splitlines()[0].startswith("error: check 'repository' failed on ")
    assert res.err.splitlines()[1].startswith("hint: check the credentials")
    assert "wrong-secret" not in res.out + res.err and "Traceback" not in res.err


def test_gcs_all_checks_pass(cli, gcs_endpoint):
    storage = pytest.importorskip("google.cloud.storage", reason="pip install 'agent-imagebackup[gcs]'")
    from google.auth.credentials import AnonymousCredentials

    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs_endpoint})
    bucket = f"doctor-{uuid.uuid4().hex[:16]}"
    client.create_bucket(bucket)
    cli.env.update(AGENT_REPO=f"gs://{bucket}/repo?endpoint={gcs_endpoint}")
    _all_passed(cli("doctor", "--json", "--size", "1", env=NO_PASSPHRASE).json())
    assert list(client.list_blobs(bucket)) == []
