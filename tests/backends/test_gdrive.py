"""GDriveBackend through google-api-python-client against the Drive fake (and real Drive when
AGENT_TEST_GDRIVE_URL is set). Every call goes over real HTTP; the SDK is never patched."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlsplit

import pytest

pytest.importorskip("googleapiclient", reason="pip install google-api-python-client")

from google.oauth2.credentials import Credentials

from backends.base import PutMode
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unsupported,
)
from backends.gdrive import GDriveBackend, login
from backends.gdrive.auth import load_credentials, write_token
from backends.middleware.retry import RetryBackend
from tests.backends.conformance import Conformance
from tests.servers.gdrive_fake import FOLDER, ROOT_ID, DriveFake, Fault

# resumable above 512 KiB in 256 KiB chunks (Drive's alignment); a short settle for ms-resolution ties
SMALL = {"resumable_threshold": 512 << 10, "chunk_size": 256 << 10, "chunk_retries": 1, "settle_delay": 0.005,
         "list_page_size": 50}


def make_backend(fake: DriveFake, folder: str | None = None, **kwargs) -> GDriveBackend:
    kwargs.setdefault("credentials", Credentials(token="test-token"))
    folder = f"agent-tests/{uuid.uuid4().hex[:12]}" if folder is None else folder
    return GDriveBackend(folder, endpoint=fake.url, **{**SMALL, **kwargs})


def folder_id(fake: DriveFake, *path: str) -> str:
    parent = ROOT_ID
    for name in path:
        parent = next(f["id"] for f in fake.state.children(parent, name) if f["mimeType"] == FOLDER)
    return parent


@pytest.fixture
def fake(gdrive_fake):
    gdrive_fake.reset()
    yield gdrive_fake
    gdrive_fake.reset()


@pytest.fixture
def drive(fake):
    folder = f"agent-tests/{uuid.uuid4().hex[:12]}"
    with make_backend(fake, folder) as be:
        be.folder_path = folder.split("/")  # for the tests that look inside the fake
        yield be


class TestGDriveConformance(Conformance):
    large_object_size = 1 << 20  # resumable: one POST, then 256 KiB chunk PUTs

    @pytest.fixture
    def backend(self, drive):
        return drive


class TestGDriveRealDrive(Conformance):
    """The suite against real Drive: AGENT_TEST_GDRIVE_URL=gdrive://agent-tests (token from
    `agent login gdrive`, AGENT_GDRIVE_TOKEN_FILE or AGENT_GDRIVE_SERVICE_ACCOUNT)."""

    large_object_size = 1 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_GDRIVE_URL")
        if not url:
            pytest.skip("AGENT_TEST_GDRIVE_URL is not set (gdrive://Folder plus a token from `agent login gdrive`)")
        parts = urlsplit(url)
        parts = parts._replace(path=f"{parts.path.rstrip('/')}/agent-test-{uuid.uuid4().hex[:12]}")
        tuning = {k: SMALL[k] for k in ("resumable_threshold", "chunk_size", "list_page_size")}
        be = GDriveBackend.from_url(parts, dict(parse_qsl(parts.query)), settle_delay=1.0, **tuning)
        yield be
        folder = be._tree.folder((), create=False)
        if folder:
            be._tree.delete(folder)  # the whole test folder, with what the suite left in it
        be.close()


# -- uploads -----------------------------------------------------------------------------------

def test_resumable_upload_in_aligned_chunks_and_overwrite_keeps_the_id(fake, drive):
    payload = os.urandom((1 << 20) + 100)
    drive.put("data/big", payload)
    sessions = [line for line, _ in fake.state.log if "uploadType=resumable" in line]
    assert len([line for line in sessions if line.startswith("POST")]) == 1
    assert len([line for line in sessions if line.startswith("PUT")]) == 5  # 4 x 256 KiB + the tail
    parent = folder_id(fake, *drive.folder_path, "data")
    [stored] = fake.state.children(parent, "big")
    drive.put("data/big", b"small now")  # multipart PATCH into the same file id
    drive.put("data/big", payload[::-1])  # resumable PATCH into the same file id
    [again] = fake.state.children(parent, "big")
    assert again["id"] == stored["id"] and again["content"] == payload[::-1]
    assert drive.get("data/big", offset=(1 << 20) - 3, length=10) == payload[::-1][(1 << 20) - 3:(1 << 20) + 7]


def test_ranged_reads(drive):
    payload = bytes(range(256)) * 4
    drive.put("r", payload)
    assert drive.get("r", offset=1000) == payload[1000:]
    assert drive.get("r", offset=1024) == b""  # a range starting at the end is empty, not an error
    assert drive.get("r", offset=1023, length=1) == payload[-1:]
    assert drive.get("r", offset=7, length=0) == b""
    for offset, length in ((1020, 5), (1025, None), (1025, 1), (2000, 0)):
        with pytest.raises(InvalidRange):
            drive.get("r", offset=offset, length=length)


def test_retention_is_unsupported_and_url_options_are_checked(fake, drive):
    with pytest.raises(Unsupported):
        drive.put("s", b"x", retain_until=datetime.now(UTC) + timedelta(days=1))
    with pytest.raises(BackendError, match="unknown gdrive:// option.*secret"):
        GDriveBackend.from_url(urlsplit("gdrive://Backups/x"), {"secret": "1"})
    with pytest.raises(BackendError, match="credentials never go"):
        GDriveBackend.from_url(urlsplit("gdrive://user:pw@Backups/x"), {})
    with pytest.raises(BackendError, match="needs a folder"):
        GDriveBackend.from_url(urlsplit("gdrive://"), {}, credentials=Credentials(token="t"))
    url = urlsplit(f"gdrive://Backups/office%20server?endpoint={fake.url}")
    be = GDriveBackend.from_url(url, dict(parse_qsl(url.query)), credentials=Credentials(token="test-token"))
    assert be.location == f"gdrive://Backups/office server at {fake.url}"
    be.put("config", b"c")
    assert fake.state.children(folder_id(fake, "Backups", "office server"), "config")[0]["content"] == b"c"


def test_root_option_for_a_shared_drive(fake, drive):
    root = drive._client.files().create(body={"name": f"shared-{uuid.uuid4().hex[:6]}", "mimeType": FOLDER},
                                        supportsAllDrives=True).execute()["id"]  # stands in for a drive id
    with make_backend(fake, "", root=root) as be:
        assert be.location == f"gdrive://?root={root} at {fake.url}"
        be.put("data/k", b"v")
        assert [i.key for i in be.list("")] == ["data/k"]
    data = next(f for f in fake.state.children(root, "data"))
    assert fake.state.children(data["id"], "k")[0]["content"] == b"v"


def test_foreign_items_are_not_listed(fake, drive):
    drive.put("index/a", b"1")
    files = drive._client.files()
    parent = folder_id(fake, *drive.folder_path, "index")
    files.create(body={"name": "Notes", "mimeType": "application/vnd.google-apps.document",
                       "parents": [parent]}).execute()
    files.create(body={"name": "UPPER.txt", "parents": [parent]}).execute()
    assert [i.key for i in drive.list("")] == ["index/a"]


# -- throttling, quotas, credentials ---------------------------------------------------------

def test_throttling_burst_is_survived_with_the_retry_middleware(fake, drive):
    waits: list[float] = []
    be = RetryBackend(drive, base_delay=0.001, max_delay=0.002, sleep=waits.append)
    fake.state.faults += [Fault(r"^GET /drive/v3/files\?q=", 429, "rateLimitExceeded", retry_after=7, times=2),
                          Fault(r"^POST /upload/", 403, "userRateLimitExceeded", times=1),
                          Fault(r"^GET /drive/v3/files/[^?]+\?.*alt=media", 503, "backendError", times=1)]
    be.put("data/k", b"payload")
    assert be.get("data/k") == b"payload"
    assert [s for _, s in fake.state.requests(r"^GET /drive/v3/files\?q=")][:3] == [429, 429, 200]
    assert [s for _, s in fake.state.requests(r"^POST /upload/")] == [403, 200]
    assert [s for _, s in fake.state.requests(r"alt=media")] == [503, 200]
    assert be.retries == 4 and waits[:2] == [7, 7]  # Retry-After honoured


def test_failed_chunk_resumes_the_same_session(fake, drive):
    payload = os.urandom(600 << 10)
    fake.state.faults.append(Fault(r"^PUT /upload/drive/v3/files\?uploadType=resumable&upload_id=", 503,
                                   "backendError"))
    drive.put("big", payload)
    assert [s for _, s in fake.state.requests(r"^POST /upload/.*resumable")] == [200]  # one session only
    assert [s for _, s in fake.state.requests(r"^PUT /upload/")][:3] == [503, 308, 308]
    assert drive.get("big") == payload


def test_content_damaged_on_the_way_is_caught_by_md5_and_not_kept(fake, drive):
    be = RetryBackend(drive, sleep=lambda _: None)
    fake.state.faults.append(Fault(r"^POST /upload/", corrupt=True))
    be.put("data/k", b"payload", mode=PutMode.CREATE)  # damaged copy deleted, then stored again
    fake.state.faults.append(Fault(r"^PUT /upload/", corrupt=True, times=3))  # 3 chunks: the last one counts
    be.put("data/big", os.urandom(600 << 10), mode=PutMode.CREATE)
    parent = folder_id(fake, *drive.folder_path, "data")
    assert [f["content"] for f in fake.state.children(parent, "k")] == [b"payload"]
    assert len(fake.state.children(parent, "big")) == 1 and be.retries == 2


def test_storage_quota_is_quota_exceeded_and_not_retried(fake, drive):
    drive.put("a", b"x" * 100)
    with fake.state.lock:
        fake.state.storage_quota = fake.state.used() + 50
    be = RetryBackend(drive, sleep=lambda _: pytest.fail("QuotaExceeded must not be retried"))
    with pytest.raises(QuotaExceeded, match="full"):
        be.put("b", b"y" * 100)
    with pytest.raises(QuotaExceeded):
        be.put("c", os.urandom(600 << 10))  # resumable: refused when the session starts
    with pytest.raises(NotFound):
        be.head("c")
    be.put("small", b"z")


def test_daily_upload_limit_stops_the_run_with_a_resume_message(fake, drive):
    fake.state.faults.append(Fault(r"^POST /upload/", 403, "uploadLimitExceeded", times=5))
    with pytest.raises(QuotaExceeded, match="daily upload limit.*next run resumes"):
        drive.put("data/k", b"x")


def test_other_403_is_permission_denied(fake, drive):
    fake.state.faults.append(Fault(r"^GET /drive/v3/files", 403, "insufficientFilePermissions"))
    with pytest.raises(PermissionDenied):
        drive.head("k")


def _token_file(tmp_path, fake: DriveFake, refresh_token: str, **extra) -> str:
    path = tmp_path / "gdrive.json"
    write_token(path, json.dumps({"token": "stale-access-token", "refresh_token": refresh_token,
                                  "client_id": "cid.apps.googleusercontent.com", "client_secret": "s",
                                  "token_uri": fake.url + "token", **extra}))
    return str(path)


def test_expired_or_revoked_token_is_an_auth_error_with_the_login_hint(tmp_path, fake):
    expired = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for token_file in (_token_file(tmp_path, fake, "revoked-refresh-token", expiry=expired),
                       _token_file(tmp_path, fake, "revoked-refresh-token")):  # refreshed on the 401
        be = RetryBackend(make_backend(fake, credentials=None, token_file=token_file),
                          sleep=lambda _: pytest.fail("AuthError must not be retried"))
        with pytest.raises(AuthError, match=r"run `agent login gdrive` again"):
            be.put("k", b"x")
    with pytest.raises(AuthError, match="agent login gdrive"):  # a bare access token cannot refresh
        make_backend(fake, credentials=Credentials(token="unknown")).head("k")


def test_token_refresh_from_the_token_file(tmp_path, fake, monkeypatch):
    fake.state.refresh_tokens.add("good-refresh-token")
    monkeypatch.setenv("AGENT_GDRIVE_TOKEN_FILE", _token_file(tmp_path, fake, "good-refresh-token"))
    url = urlsplit(f"gdrive://agent-tests/{uuid.uuid4().hex[:8]}?endpoint={fake.url}")
    with GDriveBackend.from_url(url, dict(parse_qsl(url.query)), **SMALL) as be:
        be.put("k", b"v")  # 401 for the stale access token, refresh, retry: all inside google-auth
        assert be.get("k") == b"v"
    assert fake.state.requests(r"^POST /token")[-1][1] == 200


def test_registry_opens_gdrive_urls(tmp_path, fake, monkeypatch):
    from backends.registry import open_backend

    fake.state.refresh_tokens.add("registry-refresh-token")
    monkeypatch.setenv("AGENT_GDRIVE_TOKEN_FILE", _token_file(tmp_path, fake, "registry-refresh-token"))
    try:
        be = open_backend(f"gdrive://agent-tests/{uuid.uuid4().hex[:8]}?endpoint={fake.url}")
    except BackendError as exc:
        if "unknown repository scheme" in str(exc):
            pytest.skip("backends/registry.py has no gdrive:// line yet")
        raise
    with be:
        assert isinstance(be, GDriveBackend)
        be.put("config", b"c")
        assert [i.key for i in be.list("")] == ["config"]


def test_missing_token_and_bad_service_account(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENT_GDRIVE_TOKEN_FILE", str(tmp_path / "none.json"))
    with pytest.raises(AuthError, match="agent login gdrive"):
        load_credentials()
    (tmp_path / "sa.json").write_text("{}")
    monkeypatch.setenv("AGENT_GDRIVE_SERVICE_ACCOUNT", str(tmp_path / "sa.json"))
    with pytest.raises(AuthError, match="service account"):
        load_credentials()


def test_service_account(tmp_path, fake, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    email = f"agent-{uuid.uuid4().hex[:6]}@project.iam.gserviceaccount.com"
    (tmp_path / "sa.json").write_text(json.dumps({
        "type": "service_account", "client_email": email, "private_key": pem, "private_key_id": "k1",
        "client_id": "1", "token_uri": fake.url + "token", "project_id": "p"}))
    fake.state.service_accounts.add(email)
    monkeypatch.setenv("AGENT_GDRIVE_SERVICE_ACCOUNT", str(tmp_path / "sa.json"))
    with make_backend(fake, credentials=None) as be:
        be.put("k", b"sa")
        assert be.get("k") == b"sa"


# -- duplicate names and the path cache ----------------------------------------------------------

def test_two_machines_racing_create_leave_one_winner_and_one_file(fake):
    folder = f"agent-tests/{uuid.uuid4().hex[:12]}"
    machines = [make_backend(fake, folder) for _ in range(2)]  # separate caches, like two hosts
    machines[0].put("locks/seed", b"s")  # the folders exist; only the file creation races
    for round_ in range(4):
        key, barrier, outcome = f"locks/k{round_}", threading.Barrier(2), {}

        def race(n: int, key: str = key, barrier: threading.Barrier = barrier, outcome: dict = outcome) -> None:
            barrier.wait()
            try:
                machines[n].put(key, f"machine {n}".encode(), mode=PutMode.CREATE)
                outcome[n] = "won"
            except AlreadyExists:
                outcome[n] = "lost"

        threads = [threading.Thread(target=race, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcome.values()) == ["lost", "won"]
        winner = next(n for n, result in outcome.items() if result == "won")
        [stored] = fake.state.children(folder_id(fake, *folder.split("/"), "locks"), f"k{round_}")
        assert stored["content"] == f"machine {winner}".encode()
        assert all(m.get(key) == f"machine {winner}".encode() for m in machines)


def test_duplicates_resolve_to_the_oldest_then_lowest_id(fake, drive):
    drive.put("d/x", b"first")
    parent = folder_id(fake, *drive.folder_path, "d")
    [first] = fake.state.children(parent, "x")
    low, high = "-" * 24, "z" * 40  # below and above any random id ('-' and 'z' end the alphabet)
    with fake.state.lock:  # what a crashed racer leaves: same name, same millisecond, other ids
        for new_id, content in ((low, b"tie, lower id"), (high, b"tie, higher id")):
            fake.state.files[new_id] = {**first, "id": new_id, "content": content}
    fresh = make_backend(fake, "/".join(drive.folder_path))
    assert fresh.get("d/x") == b"tie, lower id"
    with fake.state.lock:
        fake.state.files[high]["createdTime"] = "2000-01-01T00:00:00.000Z"
    assert make_backend(fake, "/".join(drive.folder_path)).get("d/x") == b"tie, higher id"  # older wins
    assert [(i.key, i.size) for i in fresh.list("d/")] == [("d/x", len(b"tie, higher id"))]
    with pytest.raises(AlreadyExists):
        fresh.put("d/x", b"new", mode=PutMode.CREATE)
    fresh.delete("d/x")  # removes every duplicate
    assert fake.state.children(parent, "x") == []


def test_path_cache_after_delete_elsewhere(fake, drive):
    other = make_backend(fake, "/".join(drive.folder_path))  # another machine on the same repository
    drive.put("data/aa/k", b"one")
    assert drive.get("data/aa/k") == b"one"  # id cached
    other.delete("data/aa/k")
    with pytest.raises(NotFound):
        drive.get("data/aa/k")
    with pytest.raises(NotFound):
        drive.head("data/aa/k")
    other.put("data/aa/k", b"two")  # a new file id under the same name
    assert drive.get("data/aa/k") == b"two"
    assert drive.head("data/aa/k").size == 3
    drive.delete("data/aa/k")  # its cached id is current again
    assert other.list("data/") and list(other.list("data/")) == []
    drive.put("data/aa/k", b"three")
    other._client.files().delete(fileId=folder_id(fake, *drive.folder_path, "data")).execute()  # whole folder
    drive.put("data/aa/k", b"four")  # the cached folder ids are stale: found out and rebuilt
    assert other.get("data/aa/k") == b"four"
    assert drive.get("data/aa/k") == b"four"
    drive.put("data/aa/k", b"five")
    drive.delete("data/aa/k")
    drive.delete("data/aa/k")
    with pytest.raises(NotFound):
        other.get("data/aa/k")


# -- login ------------------------------------------------------------------------------------

@pytest.fixture
def client_secrets(tmp_path, fake, monkeypatch):
    pytest.importorskip("google_auth_oauthlib", reason="pip install google-auth-oauthlib")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # the fake's token endpoint is plain http
    path = tmp_path / "client_secret.json"
    path.write_text(json.dumps({"installed": {
        "client_id": "cid.apps.googleusercontent.com", "client_secret": "csecret", "project_id": "p",
        "auth_uri": fake.url + "o/oauth2/auth", "token_uri": fake.url + "token",
        "redirect_uris": ["http://localhost"]}}))
    return path


def _consent(url: str) -> str:
    """What the browser does when the user clicks Allow: the fake answers with a redirect."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(url)
    except HTTPError as exc:
        return exc.headers["Location"]
    raise AssertionError("no redirect")


def _assert_token_works(fake: DriveFake, token_path) -> None:
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    assert [p.name for p in token_path.parent.iterdir()] == [token_path.name]  # no temp file left
    assert json.loads(token_path.read_text())["refresh_token"] in fake.state.refresh_tokens
    with make_backend(fake, credentials=None, token_file=str(token_path)) as be:
        be.put("k", b"v")


def test_login_with_the_loopback_redirect(tmp_path, fake, client_secrets):
    token_path = tmp_path / "tokens" / "gdrive.json"
    seen: list[str] = []

    def browser(url: str) -> None:
        seen.append(url)
        threading.Thread(target=lambda: urllib.request.urlopen(url).read(), daemon=True).start()

    assert login(token_path, client_secrets, on_url=browser, timeout=10) == token_path
    query = dict(parse_qsl(urlsplit(seen[0]).query))
    assert query["scope"] == "https://www.googleapis.com/auth/drive.file"
    assert query["access_type"] == "offline" and query["code_challenge_method"] == "S256"
    _assert_token_works(fake, token_path)


def test_login_by_pasting_the_redirect_address(tmp_path, fake, client_secrets):
    token_path, urls = tmp_path / "t" / "gdrive.json", []
    login(token_path, client_secrets, on_url=urls.append, paste=lambda: _consent(urls[0]))
    _assert_token_works(fake, token_path)
    with pytest.raises(AuthError, match="state mismatch"):
        login(token_path, client_secrets, on_url=urls.append,
              paste=lambda: _consent(urls[-1]).replace("state=", "state=x"))
    with pytest.raises(AuthError, match="refused"):
        login(token_path, client_secrets, on_url=urls.append,
              paste=lambda: "http://127.0.0.1:1/?error=access_denied")
