"""S3Backend against a real moto_server (and against real S3 when AGENT_TEST_S3_URL is set)."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

boto3 = pytest.importorskip("boto3", reason="pip install boto3")

from botocore.config import Config  # noqa: E402

from backends.base import PutMode  # noqa: E402
from backends.errors import (  # noqa: E402
    AlreadyExists,
    AuthError,
    BackendError,
    NotFound,
    ObjectLocked,
    PermissionDenied,
    TransientError,
    Unsupported,
)
from backends.registry import open_backend  # noqa: E402
from backends.s3 import S3Backend  # noqa: E402
from tests.backends.conformance import Conformance  # noqa: E402
from tests.servers.faultproxy import S3_INTERNAL, S3_SLOWDOWN, Fault, FaultProxy  # noqa: E402
from tests.servers.moto import moto_api, start_moto  # noqa: E402

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
# small enough that multipart runs on a few MiB; 5 MiB is S3's minimum part size
SMALL = {"multipart_threshold": 5 << 20, "part_size": 5 << 20, "list_page_size": 50}


def aws_session(**creds) -> boto3.session.Session:
    return boto3.session.Session(**{**CREDS, **creds})


@pytest.fixture(scope="module")
def session():
    """One session for the test credentials: clients built from it reuse the loaded models."""
    return aws_session()


def raw_client(endpoint: str, session):
    return session.client("s3", endpoint_url=endpoint, config=Config(
        s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))


def new_bucket(endpoint: str, session, **kwargs) -> str:
    name = f"t-{uuid.uuid4().hex[:20]}"
    raw_client(endpoint, session).create_bucket(Bucket=name, **kwargs)
    return name


def make_backend(endpoint: str, bucket: str, session, prefix: str = "repo", **kwargs) -> S3Backend:
    return S3Backend(bucket, prefix, endpoint_url=endpoint, session=session, **{**SMALL, **kwargs})


@pytest.fixture
def raw(moto_endpoint, session):
    return raw_client(moto_endpoint, session)


@pytest.fixture
def bucket(moto_endpoint, session):
    return new_bucket(moto_endpoint, session)


@pytest.fixture
def s3(moto_endpoint, bucket, session):
    with make_backend(moto_endpoint, bucket, session) as be:
        yield be


class TestS3Conformance(Conformance):
    large_object_size = 6 << 20  # above SMALL's threshold: two parts

    @pytest.fixture
    def backend(self, s3):
        return s3

    @pytest.fixture
    def leave_leftover(self, raw, bucket):
        """A multipart upload started and given a part, never completed nor aborted (kill -9)."""
        def leave(key: str, data: bytes, age: float = 0.0) -> None:
            if age:
                pytest.skip("S3 stamps an upload's start itself: it cannot be back-dated")
            name = f"repo/{key}"
            upload = raw.create_multipart_upload(Bucket=bucket, Key=name)["UploadId"]
            raw.upload_part(Bucket=bucket, Key=name, UploadId=upload, PartNumber=1, Body=data)

        return leave


class TestS3RealCloud(Conformance):
    """The same suite against a real bucket: AGENT_TEST_S3_URL=s3://bucket/prefix?region=..."""

    large_object_size = 6 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_S3_URL")
        if not url:
            pytest.skip("AGENT_TEST_S3_URL is not set "
                        "(s3://bucket/prefix?region=...; AWS credentials from the environment)")
        parts = urlsplit(url)
        parts = parts._replace(path=f"{parts.path.rstrip('/')}/agent-test-{uuid.uuid4().hex[:12]}")
        be = S3Backend.from_url(parts, dict(parse_qsl(parts.query)), **SMALL)
        yield be
        for info in be.list(""):
            be.delete(info.key)
        be.close()


def test_multipart_upload_is_used_and_atomic_for_create(raw, bucket, s3):
    payload = os.urandom(11 << 20)
    s3.put("data/big", payload, mode=PutMode.CREATE)
    assert raw.head_object(Bucket=bucket, Key="repo/data/big")["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MiB
    assert s3.get("data/big") == payload
    with pytest.raises(AlreadyExists):  # If-None-Match on CompleteMultipartUpload
        s3.put("data/big", os.urandom(6 << 20), mode=PutMode.CREATE)
    assert s3.get("data/big") == payload
    assert raw.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []  # the refused upload was aborted
    s3.put("data/big", b"small now")  # OVERWRITE replaces a multipart object with a single PUT
    assert s3.get("data/big") == b"small now"


def test_keys_live_under_the_prefix_only(moto_endpoint, raw, bucket, session, s3):
    for foreign in ("repo2/x", "other", "repo/UPPER", "repo/dir/"):
        raw.put_object(Bucket=bucket, Key=foreign, Body=b"f")
    s3.put("index/a", b"1")
    assert raw.get_object(Bucket=bucket, Key="repo/index/a")["Body"].read() == b"1"
    assert [i.key for i in s3.list("")] == ["index/a"]
    with make_backend(moto_endpoint, bucket, session, prefix="") as whole:
        assert sorted(i.key for i in whole.list("")) == ["other", "repo/index/a", "repo2/x"]
        assert whole.get("repo2/x") == b"f"


def test_only_unfinished_uploads_under_the_prefix_are_leftovers(raw, bucket, s3):
    for foreign in ("repo2/data/x", "other", "repo/UPPER"):
        upload = raw.create_multipart_upload(Bucket=bucket, Key=foreign)["UploadId"]
        raw.upload_part(Bucket=bucket, Key=foreign, UploadId=upload, PartNumber=1, Body=b"f")
    raw.create_multipart_upload(Bucket=bucket, Key="repo/data/ab/empty")  # started, no part yet
    [left] = s3.list_leftovers(0)
    assert (left.kind, left.name, left.size) == ("multipart upload", "data/ab/empty", 0)
    s3.remove_leftover(left)
    assert s3.list_leftovers(0) == []
    assert sorted(u["Key"] for u in raw.list_multipart_uploads(Bucket=bucket)["Uploads"]) == [
        "other", "repo/UPPER", "repo2/data/x"]


def test_from_url_and_registry(moto_endpoint, raw, bucket, monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    url = (f"s3://{bucket}/some/prefix?endpoint={moto_endpoint}&region=eu-west-1"
           "&storage_class=STANDARD_IA&sse=AES256&path_style=1")
    with open_backend(url) as be:
        assert isinstance(be, S3Backend)
        assert be.location == f"s3://{bucket}/some/prefix/ at {moto_endpoint}"
        be.put("k", b"v")
        assert be.get("k") == b"v"
    head = raw.head_object(Bucket=bucket, Key="some/prefix/k")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"


def test_url_never_carries_credentials_and_typos_are_refused(session):
    with pytest.raises(BackendError, match="credentials never go"):
        S3Backend.from_url(urlsplit("s3://AKIA:secret@bkt/p"), {})
    with pytest.raises(BackendError, match="unknown s3:// option.*secret_key"):
        S3Backend.from_url(urlsplit("s3://bkt/p"), {"secret_key": "x"})
    be = S3Backend("bkt", "p", endpoint_url="http://user:hunter2@127.0.0.1:9", session=session)
    assert "hunter2" not in be.location and "user" not in be.location


def test_missing_bucket_is_a_clear_error(moto_endpoint, session):
    with make_backend(moto_endpoint, "no-such-bucket-here", session) as be:
        for call in (lambda: be.put("k", b"x"), lambda: be.get("k"), lambda: list(be.list(""))):
            with pytest.raises(BackendError, match="bucket 'no-such-bucket-here' does not exist") as info:
                call()
            assert not isinstance(info.value, (NotFound, TransientError))


def test_object_lock_retention(moto_endpoint, raw, session):
    bucket = new_bucket(moto_endpoint, session, ObjectLockEnabledForBucket=True)
    until = datetime.now(UTC) + timedelta(hours=1)
    with make_backend(moto_endpoint, bucket, session, object_lock=True) as be:
        assert be.capabilities.object_lock
        be.put("snapshots/1", b"snap", retain_until=until)
        head = raw.head_object(Bucket=bucket, Key="repo/snapshots/1")
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert abs((head["ObjectLockRetainUntilDate"] - until).total_seconds()) < 1
        with pytest.raises(ObjectLocked):
            be.delete("snapshots/1")
        assert be.get("snapshots/1") == b"snap"
        # an unlocked key loses every version, not just gains a delete marker
        be.put("locks/a", b"1")
        be.put("locks/a", b"2")
        be.delete("locks/a")
        versions = raw.list_object_versions(Bucket=bucket, Prefix="repo/locks/a")
        assert versions.get("Versions", []) == [] and versions.get("DeleteMarkers", []) == []
        be.delete("locks/a")  # still idempotent
    with make_backend(moto_endpoint, bucket, session, object_lock=True, lock_mode="COMPLIANCE") as be:
        be.put("snapshots/2", b"c", retain_until=until)
        assert raw.head_object(Bucket=bucket, Key="repo/snapshots/2")["ObjectLockMode"] == "COMPLIANCE"


def test_retention_without_object_lock_is_unsupported(s3):
    assert not s3.capabilities.object_lock
    with pytest.raises(Unsupported):
        s3.put("snapshots/1", b"x", retain_until=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(NotFound):
        s3.head("snapshots/1")


_LEAST_PRIVILEGE = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts"]


def test_credentials_and_least_privilege_with_iam_enforced(session):
    """A private moto_server: IAM checking is a server-wide switch."""
    server = start_moto()
    try:
        ep = server.url
        bucket = new_bucket(ep, session)
        iam = session.client("iam", endpoint_url=ep)

        def user(name: str, statements: list[dict]) -> dict:
            iam.create_user(UserName=name)
            arn = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": statements}))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=name, PolicyArn=arn)
            key = iam.create_access_key(UserName=name)["AccessKey"]
            return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

        agent = user("agent", [
            {"Effect": "Allow", "Action": _LEAST_PRIVILEGE, "Resource": f"arn:aws:s3:::{bucket}/repo/*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
             "Resource": f"arn:aws:s3:::{bucket}"}])
        reader = user("reader", [
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/repo/*"}])
        moto_api(ep, "/moto-api/reset-auth", b"0")  # check every request from now on

        with make_backend(ep, bucket, aws_session(**agent)) as be:
            big = os.urandom(6 << 20)
            be.put("data/big", big, mode=PutMode.CREATE)
            be.put("index/1", b"i")
            assert be.get("data/big", offset=5 << 20, length=10) == big[5 << 20:(5 << 20) + 10]
            assert be.head("index/1").size == 1
            assert sorted(i.key for i in be.list("")) == ["data/big", "index/1"]
            be.delete("index/1")
            killed = raw_client(ep, aws_session(**agent))  # a writer that died mid-upload, same rights
            upload = killed.create_multipart_upload(Bucket=bucket, Key="repo/data/cut")["UploadId"]
            killed.upload_part(Bucket=bucket, Key="repo/data/cut", UploadId=upload, PartNumber=1, Body=b"part")
            [left] = be.list_leftovers(0)
            be.remove_leftover(left)
            assert be.list_leftovers(0) == []
        with make_backend(ep, bucket, aws_session(**reader)) as be:
            assert be.get("data/big", length=4) == big[:4]
            with pytest.raises(PermissionDenied):
                be.put("index/2", b"x")
        for creds in ({"aws_access_key_id": "AKIANOSUCHKEY0000000"},  # unknown key id
                      {**agent, "aws_secret_access_key": "wrong-secret"}):  # bad signature
            with make_backend(ep, bucket, aws_session(**creds)) as be:
                started = time.monotonic()
                with pytest.raises(AuthError):
                    be.put("index/3", b"x")
                assert time.monotonic() - started < 2  # refused at once, not retried
    finally:
        server.stop()


# -- faults injected between boto3 and moto_server -----------------------------------------------

@pytest.fixture
def proxied(moto_endpoint, bucket, session):
    with FaultProxy(urlsplit(moto_endpoint).port) as proxy:
        with make_backend(proxy.url, bucket, session, max_attempts=4) as be:
            yield be, proxy, bucket


def test_sdk_survives_throttling_and_resets(proxied):
    be, proxy, bucket = proxied
    payload = os.urandom(100_000)
    key_path = rf" /{bucket}/repo/data/k"
    proxy.add(Fault("status", 503, S3_SLOWDOWN, match="^PUT" + key_path, times=2),
              Fault("reset", match="^PUT" + key_path),
              Fault("status", 429, match="^GET" + key_path),
              Fault("reset", match="^GET" + key_path))
    be.put("data/k", payload)
    assert [kind for _, kind in proxy.requests("^PUT" + key_path)] == ["status", "status", "reset", "pass"]
    assert be.get("data/k") == payload
    assert [kind for _, kind in proxy.requests("^GET" + key_path)] == ["status", "reset", "pass"]


def test_sdk_survives_a_fault_on_one_multipart_part(proxied):
    be, proxy, bucket = proxied
    payload = os.urandom(11 << 20)
    proxy.add(Fault("status", 503, S3_SLOWDOWN, match=r"partNumber=2"), Fault("reset", match=r"partNumber=3"))
    be.put("data/big", payload)
    assert be.get("data/big") == payload
    assert [kind for _, kind in proxy.requests("partNumber=2")] == ["status", "pass"]


def test_persistent_server_error_ends_in_transient_error(proxied):
    be, proxy, bucket = proxied
    proxy.add(Fault("status", 500, S3_INTERNAL, match="^PUT", times=100))
    with pytest.raises(TransientError):
        be.put("data/k", b"x")
    assert len(proxy.requests("^PUT")) == 4  # the SDK's attempts, then it gave up


def test_retry_after_is_passed_on(proxied, session):
    _, proxy, bucket = proxied
    proxy.add(Fault("status", 503, S3_SLOWDOWN, headers=(("Retry-After", "7"),), match="^GET"))
    with make_backend(proxy.url, bucket, session, max_attempts=1) as be:  # no SDK retry: see the first reply
        with pytest.raises(TransientError) as info:
            be.get("data/k")
    assert info.value.retry_after == 7.0


def test_body_cut_mid_stream_is_transient(proxied):
    be, proxy, bucket = proxied
    be.put("data/k", os.urandom(200_000))
    proxy.add(Fault("cut_response", match="^GET"))
    with pytest.raises(TransientError):
        be.get("data/k")


def test_create_whose_reply_was_lost_is_not_a_conflict(proxied):
    be, proxy, bucket = proxied
    proxy.add(Fault("lose_response", match=rf"^PUT /{bucket}/repo/locks/1"))
    be.put("locks/1", b"mine", mode=PutMode.CREATE)  # stored, reply lost, SDK retry sees 412
    assert [kind for _, kind in proxy.requests("^PUT")] == ["lose_response", "pass"]
    assert be.get("locks/1") == b"mine"
    with pytest.raises(AlreadyExists):
        be.put("locks/1", b"theirs", mode=PutMode.CREATE)


def test_an_upload_whose_abort_failed_stays_a_leftover_until_removed(proxied):
    be, proxy, bucket = proxied
    be.put("data/kept", b"kept")
    proxy.add(Fault("status", 500, S3_INTERNAL, match=r"^POST .*\?uploadId=", times=4),  # complete: every attempt
              Fault("status", 500, S3_INTERNAL, match=r"^DELETE .*\?uploadId=", times=4))  # and the abort after it
    with pytest.raises(TransientError):
        be.put("data/big", os.urandom(6 << 20))
    [left] = be.list_leftovers(0)
    assert (left.kind, left.name, left.size) == ("multipart upload", "data/big", 6 << 20)
    assert be.list_leftovers(3600) == []
    be.remove_leftover(left)
    assert be.list_leftovers(0) == []
    assert [i.key for i in be.list("")] == ["data/kept"]
