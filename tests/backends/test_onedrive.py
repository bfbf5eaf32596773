"""OneDriveBackend through msgraph-sdk and msal against the loopback fake of Graph and Entra ID
(tests/servers/onedrive_fake.py), and against real OneDrive when AGENT_TEST_ONEDRIVE_URL is set.

Every test signs in with the real device-code flow (msal over HTTPS) and talks to the fake over
real HTTP; nothing in the SDKs is patched. The fake's state lives for the session, so each test
uses a fresh folder.
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest

pytest.importorskip("msgraph", reason="pip install msgraph-sdk msal (the onedrive extra)")

import requests

from backends.base import PutMode
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    QuotaExceeded,
    TransientError,
    Unsupported,
)
from backends.middleware.retry import RetryBackend
from backends.onedrive.auth import MsalTokenProvider, login
from backends.onedrive.backend import OneDriveBackend
from tests.backends.conformance import Conformance
from tests.servers.onedrive_fake import OneDriveFake

# msgraph-sdk's generated request builders warn about their own deprecated classes when imported
pytestmark = pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning")

# upload sessions above 256 KiB, in 320 KiB fragments (Graph's unit); small pages so paging runs
SMALL = {"session_threshold": 256 << 10, "fragment_size": 320 << 10, "list_page_size": 50}
LOGIN_HINT = "run `agent login onedrive` again"


def tls_session(fake: OneDriveFake) -> requests.Session:
    session = requests.Session()
    session.verify = fake.ca_file
    session.trust_env = False  # REQUESTS_CA_BUNDLE in this environment would override verify=
    return session


def sign_in(fake: OneDriveFake, path, **kwargs) -> list[str]:
    """The device-code flow; the 'user' approves the code shown. Returns the messages shown."""
    shown: list[str] = []

    def show(message: str) -> None:
        shown.append(message)
        fake.approve(re.search(r"enter the code (\S+)", message)[1])

    login(path, fake.client_id, show, authority=fake.authority, http_client=tls_session(fake), **kwargs)
    return shown


@pytest.fixture(scope="module")
def token_file(onedrive_fake, tmp_path_factory):
    path = tmp_path_factory.mktemp("onedrive-login") / "tokens" / "onedrive.json"
    sign_in(onedrive_fake, path)
    return path


@pytest.fixture(scope="module")
def tokens(onedrive_fake, token_file):
    return MsalTokenProvider(token_file, ["127.0.0.1"], http_client=tls_session(onedrive_fake))


def make_backend(fake: OneDriveFake, tokens, folder: str | None = None, **kwargs) -> OneDriveBackend:
    folder = folder or f"Backups/t-{uuid.uuid4().hex[:12]}"
    return OneDriveBackend(folder, endpoint=fake.graph_url, tokens=tokens, **{**SMALL, **kwargs})


@pytest.fixture
def folder():
    return f"Backups/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def onedrive(onedrive_fake, tokens, folder):
    with make_backend(onedrive_fake, tokens, folder) as be:
        yield be


class TestOneDriveConformance(Conformance):
    large_object_size = 1 << 20  # an upload session of four fragments

    @pytest.fixture
    def backend(self, onedrive):
        return onedrive


class TestOneDriveRealCloud(Conformance):
    """The suite against real OneDrive: AGENT_TEST_ONEDRIVE_URL=onedrive:///agent-tests, signed in with
    `agent login onedrive` (or AGENT_ONEDRIVE_TOKEN_FILE pointing at such a token file)."""

    large_object_size = 1 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_ONEDRIVE_URL")
        if not url:
            pytest.skip("AGENT_TEST_ONEDRIVE_URL is not set (onedrive:///some/folder; sign in first with "
                        "`agent login onedrive` or set AGENT_ONEDRIVE_TOKEN_FILE)")
        parts = urlsplit(url)
        parts = parts._replace(path=f"{parts.path.rstrip('/')}/agent-test-{uuid.uuid4().hex[:12]}")
        be = OneDriveBackend.from_url(parts, dict(parse_qsl(parts.query)), **SMALL)
        yield be
        for info in be.list(""):
            be.delete(info.key)
        be.close()


# -- what lands where, and how -------------------------------------------------------------------

def test_objects_live_in_the_app_folder_and_sessions_upload_large_ones(onedrive_fake, onedrive, folder):
    payload = os.urandom((1 << 20) + 7)
    onedrive.put("data/ab/pack", payload, mode=PutMode.CREATE)
    assert onedrive_fake.read(f"{folder}/data/ab/pack") == payload  # Apps/<app>/Backups/t-.../data/ab/pack
    assert onedrive_fake.drive.approot.name == "agent-test"
    fragments = onedrive_fake.requests(r"^PUT /upload/")[-4:]
    assert [f.content_range for f in fragments] == [
        "bytes 0-327679/1048583", "bytes 327680-655359/1048583", "bytes 655360-983039/1048583",
        "bytes 983040-1048582/1048583"]
    assert [f.status for f in fragments] == [202, 202, 202, 201]
    sent = len(onedrive_fake.requests(r"^PUT /upload/"))
    with pytest.raises(AlreadyExists):  # refused when the session is created: no fragment is sent
        onedrive.put("data/ab/pack", os.urandom(400 << 10), mode=PutMode.CREATE)
    assert onedrive_fake.requests(r"createUploadSession$")[-1].status == 409
    assert len(onedrive_fake.requests(r"^PUT /upload/")) == sent
    assert onedrive_fake.read(f"{folder}/data/ab/pack") == payload
    onedrive.put("data/ab/pack", b"small now")  # OVERWRITE replaces it with one PUT
    assert onedrive.get("data/ab/pack") == b"small now"


def test_create_conflict_found_at_commit(onedrive_fake, onedrive, folder):
    """Another writer creates the key while our session is open: Graph refuses the last fragment."""
    drive = onedrive_fake.drive
    onedrive_fake.add_fault(r"^PUT /upload/", 0, skip=1, action=lambda: drive.store(
        drive.app_folder().id, f"/{folder}/locks/a", b"rival", "fail"))
    with pytest.raises(AlreadyExists):
        onedrive.put("locks/a", os.urandom(700 << 10), mode=PutMode.CREATE)
    assert onedrive_fake.requests(r"^PUT /upload/")[-1].status == 409
    assert onedrive.get("locks/a") == b"rival"


def test_parent_folders_are_made_when_an_upload_does_not_create_them(onedrive_fake, onedrive, folder):
    onedrive_fake.create_parents = False
    try:
        onedrive.put("data/ab/small", b"s")
        onedrive.put("data/cd/big", b"b" * (400 << 10), mode=PutMode.CREATE)
    finally:
        onedrive_fake.create_parents = True
    assert onedrive_fake.read(f"{folder}/data/ab/small") == b"s"
    assert onedrive_fake.read(f"{folder}/data/cd/big") == b"b" * (400 << 10)
    made = [r.status for r in onedrive_fake.requests(r"^POST .*/children$")[-8:]]
    assert made[1:] == [201, 201, 201, 409, 409, 409, 201]  # (Backups), t-..., data, ab; then only cd is new


def test_whole_drive_option(onedrive_fake, tokens, folder):
    with make_backend(onedrive_fake, tokens, folder, drive="me") as be:
        be.put("index/1", b"i")
        assert onedrive_fake.read(f"{folder}/index/1", whole_drive=True) == b"i"
        assert be.location == f"onedrive:///{folder} (whole drive) at http://127.0.0.1:{urlsplit(onedrive_fake.graph_url).port}"


def test_listing_follows_next_links_and_skips_foreign_files(onedrive_fake, onedrive, folder):
    for i in range(60):
        onedrive.put(f"data/00/{i:03d}", b"x")
    onedrive.put("index/1", b"i")
    with onedrive_fake.lock:  # files a user put there by hand are not ours
        onedrive_fake.drive.store(onedrive_fake.drive.app_folder().id, f"/{folder}/data/Notes.TXT", b"n", "fail")
    before = len(onedrive_fake.requests(r"skiptoken"))
    assert [i.key for i in onedrive.list("data/")] == [f"data/00/{i:03d}" for i in range(60)]
    assert len(onedrive_fake.requests(r"skiptoken")) == before + 1  # 60 children, pages of 50
    assert [i.key for i in onedrive.list("data/00/05")] == [f"data/00/05{i}" for i in range(10)]
    assert [i.key for i in onedrive.list("i")] == ["index/1"]


# -- ranged reads ----------------------------------------------------------------------------------

def test_ranged_reads_follow_the_download_redirect(onedrive_fake, onedrive):
    payload = bytes(range(256)) * 4
    onedrive.put("data/r", payload)
    assert onedrive.get("data/r", offset=100, length=50) == payload[100:150]
    content, download = onedrive_fake.requests(r"^GET ")[-2:]
    assert (content.status, download.status) == (302, 206) and download.path.startswith("/dl/")
    assert onedrive.get("data/r", offset=1000) == payload[1000:]
    assert onedrive.get("data/r", offset=1024) == b""  # starts at the end: empty, not an error
    assert onedrive.get("data/r", offset=7, length=0) == b""
    with pytest.raises(InvalidRange):
        onedrive.get("data/r", offset=1000, length=100)
    with pytest.raises(InvalidRange):
        onedrive.get("data/r", offset=2000)
    with pytest.raises(NotFound):
        onedrive.get("data/none", offset=1, length=1)


# -- throttling, server errors, quota --------------------------------------------------------------

def test_throttling_burst_survived_under_the_retry_middleware(onedrive_fake, onedrive):
    waits: list[float] = []
    retrying = RetryBackend(onedrive, base_delay=0.001, sleep=waits.append)
    onedrive_fake.add_fault(r"^PUT .*throttled%2Fk%3A/content", 429, times=3, retry_after=4)
    onedrive_fake.add_fault(r"^GET .*throttled%2Fk%3A/content", 503, times=2, retry_after=2)
    onedrive_fake.add_fault(r"^GET .*throttled%3A/children", 509, times=1)
    retrying.put("throttled/k", b"payload")
    assert [r.status for r in onedrive_fake.requests(r"^PUT .*throttled%2Fk%3A/content")] == [429, 429, 429, 201]
    assert retrying.get("throttled/k") == b"payload"
    assert [r.status for r in onedrive_fake.requests(r"^GET .*throttled%2Fk%3A/content")] == [503, 503, 302]
    assert [i.key for i in retrying.list("throttled/")] == ["throttled/k"]
    assert waits[:5] == [4.0, 4.0, 4.0, 2.0, 2.0]  # Retry-After honoured; no hidden SDK retries


def test_one_throttled_reply_is_one_transient_error(onedrive_fake, onedrive):
    onedrive_fake.add_fault(r"^GET .*once%3A$", 503, retry_after=7)
    with pytest.raises(TransientError) as info:
        onedrive.head("once")
    assert info.value.retry_after == 7.0
    assert [r.status for r in onedrive_fake.requests(r"^GET .*once%3A$")] == [503]  # the SDK did not retry


def test_quota_exceeded_stops_without_retrying(onedrive_fake, onedrive):
    retrying = RetryBackend(onedrive, sleep=lambda s: pytest.fail("QuotaExceeded must not be retried"))
    onedrive_fake.add_fault(r"^PUT .*full%2Fsmall%3A/content", 507)
    with pytest.raises(QuotaExceeded, match="full or over quota"):
        retrying.put("full/small", b"x")
    onedrive_fake.add_fault(r"full%2Fbig%3A/createUploadSession", 507, code="quotaLimitReached")
    with pytest.raises(QuotaExceeded):
        retrying.put("full/big", os.urandom(300 << 10))
    with pytest.raises(NotFound):
        onedrive.head("full/small")


def test_upload_session_resumes_from_next_expected_ranges(onedrive_fake, onedrive, folder):
    payload = os.urandom((1 << 20) + 99)
    # the second fragment is stored but its reply is a 500; the third fails before it is stored
    onedrive_fake.add_fault(r"^PUT /upload/", 500, skip=1, after=True)
    onedrive_fake.add_fault(r"^PUT /upload/", 503, skip=2)
    onedrive.put("data/resumed", payload)
    assert onedrive_fake.read(f"{folder}/data/resumed") == payload
    sent = onedrive_fake.requests(r" /upload/")[-7:]
    assert [(r.method, r.status, r.content_range.split("/")[0]) for r in sent] == [
        ("PUT", 202, "bytes 0-327679"),
        ("PUT", 500, "bytes 327680-655359"), ("GET", 200, ""),  # kept: the session says 655360 is next
        ("PUT", 503, "bytes 655360-983039"), ("GET", 200, ""),  # not kept: the same range again
        ("PUT", 202, "bytes 655360-983039"),
        ("PUT", 201, "bytes 983040-1048674"),
    ]


def test_persistent_upload_failure_cancels_the_session(onedrive_fake, onedrive):
    onedrive_fake.add_fault(r"^PUT /upload/", 500, times=50)
    with pytest.raises(TransientError):
        onedrive.put("data/doomed", os.urandom(400 << 10))
    assert onedrive_fake.requests(r" /upload/")[-1].method == "DELETE"
    with onedrive_fake.lock:
        onedrive_fake.faults.clear()
    with pytest.raises(NotFound):
        onedrive.head("data/doomed")


# -- sign-in ---------------------------------------------------------------------------------------

def test_login_writes_a_private_token_file(onedrive_fake, tmp_path):
    path = tmp_path / "cfg" / "tokens" / "onedrive.json"
    shown = sign_in(onedrive_fake, path)
    assert "https://microsoft.com/devicelogin" in shown[0]
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert "Files.ReadWrite.AppFolder" in path.read_text()
    with pytest.raises(AuthError, match="failed|unknown"):
        login(tmp_path / "other.json", "not-our-app", lambda m: None, authority=onedrive_fake.authority,
              http_client=tls_session(onedrive_fake))


def test_tokens_refresh_and_a_revoked_sign_in_says_log_in_again(onedrive_fake, tmp_path, folder):
    path = tmp_path / "onedrive.json"
    onedrive_fake.access_token_lifetime = 60  # inside msal's 5-minute margin: every call refreshes
    try:
        sign_in(onedrive_fake, path)
        before = path.read_text()
        refreshes = len(onedrive_fake.requests(r"/oauth2/v2.0/token"))
        tokens = MsalTokenProvider(path, ["127.0.0.1"], http_client=tls_session(onedrive_fake))
        with make_backend(onedrive_fake, tokens, folder) as be:
            be.put("a", b"1")
            assert len(onedrive_fake.requests(r"/oauth2/v2.0/token")) > refreshes  # refreshed silently
            assert path.read_text() != before  # the rotated refresh token was saved
            onedrive_fake.revoke_refresh_tokens()  # expired after inactivity, or revoked by the user
            graph_calls = len(onedrive_fake.requests(r"^PUT /v1.0/"))
            with pytest.raises(AuthError, match=re.escape(LOGIN_HINT)) as info:
                RetryBackend(be, sleep=lambda s: pytest.fail("AuthError must not be retried")).put("b", b"2")
            assert "AADSTS700082" in str(info.value)
            assert len(onedrive_fake.requests(r"^PUT /v1.0/")) == graph_calls  # failed before reaching Graph
    finally:
        onedrive_fake.access_token_lifetime = 3600


def test_access_token_rejected_by_graph_is_an_auth_error(onedrive_fake, tmp_path, folder):
    path = tmp_path / "onedrive.json"
    sign_in(onedrive_fake, path)
    tokens = MsalTokenProvider(path, ["127.0.0.1"], http_client=tls_session(onedrive_fake))
    with make_backend(onedrive_fake, tokens, folder) as be:
        be.put("a", b"1")
        onedrive_fake.expire_access_token(tokens.access_token())
        with pytest.raises(AuthError, match=re.escape(LOGIN_HINT)):
            be.get("a")


def test_not_signed_in(onedrive_fake, tmp_path, folder):
    tokens = MsalTokenProvider(tmp_path / "missing.json", ["127.0.0.1"])
    with make_backend(onedrive_fake, tokens, folder) as be:
        with pytest.raises(AuthError, match="run `agent login onedrive`"):
            be.put("a", b"1")


def test_from_url_with_the_token_file_from_the_environment(onedrive_fake, token_file, folder, monkeypatch):
    monkeypatch.setenv("AGENT_ONEDRIVE_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", onedrive_fake.ca_file)  # msal's own requests session
    url = urlsplit(f"onedrive:///{folder}?endpoint={onedrive_fake.graph_url}")
    with OneDriveBackend.from_url(url, dict(parse_qsl(url.query)), **SMALL) as be:
        be.put("k", b"v")
        assert be.get("k") == b"v"
        assert be.location.startswith(f"onedrive:///{folder} at http://127.0.0.1:")
        with pytest.raises(Unsupported):
            be.put("k2", b"v", retain_until=datetime.now(UTC))
    with pytest.raises(BackendError, match="unknown onedrive:// option"):
        OneDriveBackend.from_url(urlsplit("onedrive:///x"), {"token": "secret"})
    with pytest.raises(BackendError, match="invalid OneDrive folder name"):
        OneDriveBackend.from_url(urlsplit("onedrive:///a/../b"), {})
    with pytest.raises(BackendError, match="must use https"):
        OneDriveBackend.from_url(urlsplit("onedrive:///x"), {"endpoint": "http://graph.example.com/v1.0"})


# -- threads ---------------------------------------------------------------------------------------

def test_calls_from_many_threads_share_one_loop(onedrive):
    def loops() -> int:
        return sum(t.name == "onedrive" for t in threading.enumerate())

    loops_before = loops()

    def work(n: int) -> None:
        for i in range(6):
            key = f"conc/{n}/{i}"
            onedrive.put(key, bytes([n, i]) * 50)
            assert onedrive.get(key, offset=1, length=3) == (bytes([n, i]) * 2)[1:4]
            assert onedrive.head(key).size == 100
        assert len(list(onedrive.list(f"conc/{n}/"))) == 6

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert len(list(onedrive.list("conc/"))) == 48
    assert loops() == loops_before  # all 8 threads ran their calls on the backend's one loop
