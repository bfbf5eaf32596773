"""GCSBackend against a real fake-gcs-server (and against real GCS when AGENT_TEST_GCS_URL is set)."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

storage = pytest.importorskip("google.cloud.storage", reason="pip install google-cloud-storage")

from google.auth.credentials import AnonymousCredentials  # noqa: E402

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
from backends.gcs import GCSBackend  # noqa: E402
from backends.registry import open_backend  # noqa: E402
from tests.backends.conformance import Conformance  # noqa: E402
from tests.servers.faultproxy import Fault, FaultProxy, gcs_error  # noqa: E402

# resumable above 1 MiB, in 512 KiB chunks (a multiple of 256 KiB); quick retries
SMALL = {"resumable_threshold": 1 << 20, "chunk_size": 512 << 10, "list_page_size": 50,
         "retry_initial": 0.05, "retry_maximum": 0.2, "retry_timeout": 5.0}


def make_backend(endpoint: str, bucket: str, prefix: str = "repo", **kwargs) -> GCSBackend:
    return GCSBackend(bucket, prefix, endpoint=endpoint, **{**SMALL, **kwargs})


@pytest.fixture(scope="module")
def raw(gcs_endpoint):
    client = storage.Client(project="test", credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": gcs_endpoint})
    yield client
    client.close()


@pytest.fixture
def bucket(raw):
    name = f"t-{uuid.uuid4().hex[:20]}"
    raw.create_bucket(name)
    return name


@pytest.fixture
def gcs(gcs_endpoint, bucket):
    with make_backend(gcs_endpoint, bucket) as be:
        yield be


class TestGCSConformance(Conformance):
    large_object_size = 2 << 20  # resumable: one POST, then 512 KiB chunk PUTs

    @pytest.fixture
    def backend(self, gcs):
        return gcs


class TestGCSRealCloud(Conformance):
    """The same suite against a real bucket: AGENT_TEST_GCS_URL=gs://bucket/prefix (ADC credentials)."""

    large_object_size = 2 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_GCS_URL")
        if not url:
            pytest.skip("AGENT_TEST_GCS_URL is not set (gs://bucket/prefix; Application Default Credentials)")
        parts = urlsplit(url)
        parts = parts._replace(path=f"{parts.path.rstrip('/')}/agent-test-{uuid.uuid4().hex[:12]}")
        tuning = {k: v for k, v in SMALL.items() if k in ("resumable_threshold", "chunk_size", "list_page_size")}
        be = GCSBackend.from_url(parts, dict(parse_qsl(parts.query)), **tuning)
        yield be
        for info in be.list(""):
            be.delete(info.key)
        be.close()

    def test_create_refuses_existing_resumable(self, backend):
        payload = os.urandom(self.large_object_size)
        backend.put("big/once", payload, mode=PutMode.CREATE)
        with pytest.raises(AlreadyExists):
            backend.put("big/once", os.urandom(self.large_object_size), mode=PutMode.CREATE)
        assert backend.get("big/once") == payload


@pytest.fixture
def proxied(gcs_endpoint, bucket):
    with FaultProxy(urlsplit(gcs_endpoint).port) as proxy, make_backend(proxy.url, bucket) as be:
        yield be, proxy, bucket


def _outcomes(proxy: FaultProxy, pattern: str) -> list[str]:
    return [kind for _, kind in proxy.requests(pattern)]


def test_large_objects_use_a_chunked_resumable_session(proxied):
    be, proxy, bucket = proxied
    payload = os.urandom((2 << 20) + 100)
    be.put("data/big", payload, mode=PutMode.CREATE)
    # fake-gcs-server ignores the precondition on resumable sessions (GCS enforces it; the real-cloud
    # class checks that), so here it is enough that the session asked for it
    assert len(proxy.requests(r"^POST /upload/\S*uploadType=resumable&ifGenerationMatch=0 ")) == 1
    assert len(proxy.requests(r"^PUT /upload/\S*upload_id=")) == 5  # 4 full chunks of 512 KiB + the tail
    assert proxy.requests(r"uploadType=multipart") == []
    assert be.get("data/big") == payload
    proxy.clear()
    above_library_limit = os.urandom((9 << 20) + 1)  # the library's own resumable path, size known
    be.put("data/bigger", above_library_limit)
    assert len(proxy.requests(r"^PUT /upload/\S*upload_id=")) == 19  # 18 chunks of 512 KiB + 1 byte
    assert be.get("data/bigger") == above_library_limit
    proxy.clear()
    be.put("index/small", b"x" * 1000)
    assert _outcomes(proxy, r"^(POST|PUT) /upload/") == ["pass"]
    assert len(proxy.requests(r"uploadType=multipart")) == 1


def test_keys_live_under_the_prefix_only(gcs_endpoint, raw, bucket, gcs):
    for foreign in ("repo2/x", "other", "repo/UPPER", "repo/dir/"):
        raw.bucket(bucket).blob(foreign).upload_from_string(b"f")
    gcs.put("index/a", b"1")
    assert raw.bucket(bucket).blob("repo/index/a").download_as_bytes() == b"1"
    assert [i.key for i in gcs.list("")] == ["index/a"]
    with make_backend(gcs_endpoint, bucket, prefix="") as whole:
        assert sorted(i.key for i in whole.list("")) == ["other", "repo/index/a", "repo2/x"]


def test_from_url_registry_and_emulator_variable(gcs_endpoint, bucket, monkeypatch):
    with open_backend(f"gs://{bucket}/some/prefix?endpoint={gcs_endpoint}&project=test") as be:
        assert isinstance(be, GCSBackend)
        assert be.location == f"gs://{bucket}/some/prefix/ at {gcs_endpoint}"
        be.put("k", b"v")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    with GCSBackend.from_url(urlsplit(f"gs://{bucket}/some/prefix"), {}) as be:  # anonymous, no endpoint option
        assert be.get("k") == b"v"


def test_url_never_carries_credentials_and_typos_are_refused(gcs_endpoint):
    with pytest.raises(BackendError, match="credentials never go"):
        GCSBackend.from_url(urlsplit("gs://user:secret@bkt/p"), {})
    with pytest.raises(BackendError, match="unknown gs:// option.*token"):
        GCSBackend.from_url(urlsplit("gs://bkt/p"), {"token": "x"})
    with pytest.raises(BackendError, match="multiple of"):
        GCSBackend("bkt", endpoint=gcs_endpoint, chunk_size=1000)
    be = GCSBackend("bkt", endpoint="http://user:hunter2@127.0.0.1:9")
    assert "hunter2" not in be.location and "user" not in be.location


def test_missing_bucket_is_a_clear_error(gcs_endpoint):
    with make_backend(gcs_endpoint, "no-such-bucket-here") as be:
        for call in (lambda: be.put("k", b"x"), lambda: list(be.list(""))):
            with pytest.raises(BackendError, match="bucket 'no-such-bucket-here' does not exist") as info:
                call()
            assert not isinstance(info.value, (NotFound, TransientError))


def test_missing_default_credentials_are_an_auth_error(monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    started = time.monotonic()
    with pytest.raises(AuthError, match="missing.json"):
        GCSBackend("some-bucket", "p")
    assert time.monotonic() - started < 2


def test_rejected_credentials_fail_fast_without_retry(proxied):
    be, proxy, bucket = proxied
    proxy.add(Fault("status", 401, gcs_error(401, "Invalid Credentials"), content_type="application/json",
                    match="^POST /upload/", times=10))
    started = time.monotonic()
    with pytest.raises(AuthError):  # anonymous credentials cannot be refreshed; real ones retry once
        be.put("k", b"x")
    assert time.monotonic() - started < 1
    assert _outcomes(proxy, "^POST /upload/") == ["status"]  # refused once, not retried


def test_forbidden_and_retention_refusals(proxied):
    be, proxy, bucket = proxied
    be.put("snapshots/1", b"s")
    proxy.add(Fault("status", 403, gcs_error(403, "agent@example does not have storage.objects.create access"),
                    content_type="application/json", match="^POST /upload/"),
              Fault("status", 403, gcs_error(403, "Object 'x' is subject to an object retention and cannot be deleted"),
                    content_type="application/json", match="^DELETE "))
    with pytest.raises(PermissionDenied):
        be.put("k", b"x")
    with pytest.raises(ObjectLocked):
        be.delete("snapshots/1")
    assert be.get("snapshots/1") == b"s"


def test_retention_is_set_on_the_object(gcs_endpoint, raw, bucket):
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    with make_backend(gcs_endpoint, bucket, object_lock=True) as be:
        assert be.capabilities.object_lock
        be.put("snapshots/1", b"s", retain_until=until)
        be.put("snapshots/big", os.urandom(3 << 20), retain_until=until)  # resumable carries it as well
    with make_backend(gcs_endpoint, bucket, object_lock=True, lock_mode="COMPLIANCE") as be:
        be.put("snapshots/2", b"s", retain_until=until)
    for name, mode in (("snapshots/1", "Unlocked"), ("snapshots/big", "Unlocked"), ("snapshots/2", "Locked")):
        blob = raw.bucket(bucket).get_blob(f"repo/{name}")
        assert (blob.retention.mode, blob.retention.retain_until_time) == (mode, until)


def test_retention_without_object_lock_is_unsupported(gcs):
    with pytest.raises(Unsupported):
        gcs.put("snapshots/1", b"x", retain_until=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(NotFound):
        gcs.head("snapshots/1")


# -- faults injected between google-cloud-storage and fake-gcs-server ----------------------------

def test_library_survives_throttling_and_resets(proxied):
    be, proxy, bucket = proxied
    small, big = os.urandom(50_000), os.urandom(3 << 20)
    unavailable = gcs_error(503, "Service Unavailable")
    proxy.add(Fault("status", 503, unavailable, content_type="application/json", match="uploadType=multipart", times=2),
              Fault("status", 429, gcs_error(429, "rateLimitExceeded"), content_type="application/json",
                    match=r"^GET /download/\S*data%2Fsmall"),
              Fault("reset", match=r"^GET /download/\S*data%2Fsmall"),
              Fault("status", 503, unavailable, content_type="application/json", match=r"^PUT /upload/\S*upload_id="),
              Fault("reset", match=r"^PUT /upload/\S*upload_id="))
    be.put("data/small", small)
    assert _outcomes(proxy, "uploadType=multipart") == ["status", "status", "pass"]
    assert be.get("data/small") == small
    assert _outcomes(proxy, r"^GET /download/\S*data%2Fsmall") == ["status", "reset", "pass"]
    be.put("data/big", big)  # a 503 and a reset on resumable chunks: only those chunks are resent
    assert _outcomes(proxy, r"^PUT /upload/\S*upload_id=")[:2] == ["status", "reset"]
    assert be.get("data/big") == big


def test_persistent_server_error_ends_in_transient_error(gcs_endpoint, bucket):
    with FaultProxy(urlsplit(gcs_endpoint).port) as proxy:
        proxy.add(Fault("status", 500, gcs_error(500, "Backend Error"), content_type="application/json",
                        headers=(("Retry-After", "7"),), times=1000))
        with make_backend(proxy.url, bucket, retry_timeout=1.0) as be:
            started = time.monotonic()
            with pytest.raises(TransientError) as info:
                be.put("k", b"x")
            assert time.monotonic() - started < 3
        assert len(proxy.requests("^POST /upload/")) > 2  # retried, then gave up at the deadline
        assert info.value.retry_after == 7.0


def test_body_cut_mid_stream_is_survived_or_transient(proxied):
    be, proxy, bucket = proxied
    payload = os.urandom(300_000)
    be.put("data/k", payload)
    proxy.add(Fault("cut_response", match=r"^GET /download/"))
    assert be.get("data/k") == payload  # the library re-requests what it did not get
    assert _outcomes(proxy, r"^GET /download/")[0] == "cut_response"


def test_create_whose_reply_was_lost_is_not_a_conflict(proxied):
    be, proxy, bucket = proxied
    proxy.add(Fault("lose_response", match="uploadType=multipart"))
    be.put("locks/1", b"mine", mode=PutMode.CREATE)  # stored, reply lost, retry sees 412
    assert _outcomes(proxy, "uploadType=multipart") == ["lose_response", "pass"]
    assert be.get("locks/1") == b"mine"
    with pytest.raises(AlreadyExists):
        be.put("locks/1", b"theirs", mode=PutMode.CREATE)
