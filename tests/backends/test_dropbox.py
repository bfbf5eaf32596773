"""DropboxBackend through the official SDK over real HTTPS to a local fake of the Dropbox API
(and to real Dropbox when AGENT_TEST_DROPBOX_URL is set)."""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

pytest.importorskip("dropbox", reason="pip install dropbox")

from dropbox import exceptions as dbx_exc

from backends.base import PutMode
from backends.dropbox.auth import default_token_path, load_token, save_token
from backends.dropbox.backend import SINGLE_CALL_LIMIT, DropboxBackend
from backends.dropbox.errors import translate
from backends.errors import (
    AlreadyExists,
    AuthError,
    BackendError,
    InvalidRange,
    NotFound,
    QuotaExceeded,
    TransientError,
)
from backends.middleware.retry import RetryBackend
from tests.backends.conformance import Conformance
from tests.servers.dropbox_fake import APP_KEY

# small enough that upload sessions and list_folder/continue run on a few MiB and keys
SMALL = {"upload_threshold": 4 << 20, "chunk_size": 4 << 20, "list_limit": 50}
UPLOAD_ROUTES = r"^files/upload"


@pytest.fixture
def fake(dropbox_fake):
    dropbox_fake.reset()
    yield dropbox_fake
    dropbox_fake.reset()


@pytest.fixture
def token_file(fake, tmp_path) -> Path:
    path = tmp_path / "tokens" / "dropbox.json"
    save_token(path, {"app_key": APP_KEY, "refresh_token": fake.new_refresh_token()})
    return path


def open_dropbox(fake, token_file: Path, root: str, **tuning) -> DropboxBackend:
    url = urlsplit(f"dropbox://{root}?endpoint={fake.host}&ca={fake.ca}")
    return DropboxBackend.from_url(url, dict(parse_qsl(url.query)), token_file=token_file, **{**SMALL, **tuning})


@pytest.fixture
def root(fake):
    """A fresh folder per test, removed afterwards."""
    path = f"/Backups/t-{uuid.uuid4().hex[:12]}"
    yield path
    with contextlib.suppress(Exception):
        fake.delete({"path": path}, b"")


@pytest.fixture
def dbx(fake, token_file, root):
    with open_dropbox(fake, token_file, root) as be:
        yield be


def retrying(be, **kwargs) -> RetryBackend:
    return RetryBackend(be, base_delay=0.05, max_delay=0.2, **kwargs)


class TestDropboxConformance(Conformance):
    large_object_size = 9 << 20  # above SMALL's threshold: start + append + finish

    @pytest.fixture
    def backend(self, dbx):
        return dbx


class TestDropboxRealCloud(Conformance):
    """The same suite against real Dropbox: AGENT_TEST_DROPBOX_URL=dropbox:///agent-tests plus a
    token file from `agent login dropbox` (AGENT_DROPBOX_TOKEN_FILE or the default location)."""

    large_object_size = 9 << 20

    @pytest.fixture
    def backend(self):
        url = os.environ.get("AGENT_TEST_DROPBOX_URL")
        if not url:
            pytest.skip("AGENT_TEST_DROPBOX_URL is not set (dropbox:///FOLDER; log in first with "
                        "`agent login dropbox` or set AGENT_DROPBOX_TOKEN_FILE)")
        if not default_token_path().exists():
            pytest.skip(f"no Dropbox token file at {default_token_path()}; run `agent login dropbox`")
        parts = urlsplit(url)
        parts = parts._replace(path=f"{parts.path.rstrip('/')}/agent-test-{uuid.uuid4().hex[:12]}")
        be = DropboxBackend.from_url(parts, dict(parse_qsl(parts.query)), **SMALL)
        yield RetryBackend(be)  # real Dropbox throttles concurrent writes (too_many_write_operations)
        with contextlib.suppress(Exception):
            be._dbx.files_delete_v2(be._root)  # the whole per-test folder, in one call
        be.close()


# -- uploads -----------------------------------------------------------------------------------------


def test_small_objects_use_one_call_large_ones_a_session(fake, dbx):
    dbx.put("index/small", b"x" * 1000)
    assert [c.route for c in fake.calls(UPLOAD_ROUTES)] == ["files/upload"]
    payload = os.urandom(9 << 20)
    dbx.put("data/big", payload, mode=PutMode.CREATE)
    routes = [c.route for c in fake.calls(UPLOAD_ROUTES)][1:]
    assert routes == ["files/upload_session/start", "files/upload_session/append_v2", "files/upload_session/finish"]
    uploads = fake.calls(UPLOAD_ROUTES)
    assert all(c.status == 200 and len(c.arg["content_hash"]) == 64 for c in uploads)  # verified by the fake
    assert uploads[-1].arg["commit"]["mode"] == {".tag": "add"} and uploads[-1].arg["commit"]["autorename"] is False
    assert dbx.get("data/big") == payload
    with pytest.raises(AlreadyExists):  # the conflict surfaces at finish
        dbx.put("data/big", os.urandom(9 << 20), mode=PutMode.CREATE)
    dbx.put("data/big", payload, mode=PutMode.CREATE)  # identical contents: no conflict on Dropbox
    assert dbx.get("data/big") == payload


def test_concurrent_upload_session(fake, token_file, root):
    payload = os.urandom((13 << 20) + 7)
    with open_dropbox(fake, token_file, root, upload_concurrency=3) as be:
        be.put("data/par", payload)
        assert be.get("data/par") == payload
    calls = fake.calls(UPLOAD_ROUTES)
    assert calls[0].arg["session_type"] == {".tag": "concurrent"}
    appends = [c for c in calls if c.route.endswith("append_v2")]
    assert sorted(c.arg["cursor"]["offset"] for c in appends) == [0, 4 << 20, 8 << 20, 12 << 20]
    assert [c.arg.get("close", False) for c in sorted(appends, key=lambda c: c.arg["cursor"]["offset"])] == \
        [False, False, False, True]
    assert calls[-1].route.endswith("finish") and calls[-1].arg["cursor"]["offset"] == len(payload)


def test_above_150_mib_always_goes_through_a_session(fake, token_file, root):
    with open_dropbox(fake, token_file, root, upload_threshold=1 << 40, chunk_size=64 << 20) as be:
        payload = os.urandom(SINGLE_CALL_LIMIT + 1)
        be.put("data/huge", payload)
        assert [c.route.rsplit("/", 1)[-1] for c in fake.calls(UPLOAD_ROUTES)] == ["start", "append_v2", "finish"]
        assert be.head("data/huge").size == len(payload)
        assert be.get("data/huge", offset=SINGLE_CALL_LIMIT - 2) == payload[-3:]
        # and the fake holds Dropbox's per-call limit: one files/upload that big is refused
        with pytest.raises(dbx_exc.ApiError) as info:
            be._dbx.files_upload(payload, f"{root}/direct")
        assert info.value.error.is_payload_too_large()
    del payload


# -- reads and listing --------------------------------------------------------------------------------


def test_ranged_reads_ask_dropbox_for_the_range(fake, dbx):
    dbx.put("r", b"0123456789abcdef")
    assert dbx.get("r", offset=4, length=6) == b"456789"
    last = fake.calls("files/download")[-1]
    assert (last.headers["range"], last.status) == ("bytes=4-9", 206)
    assert dbx.get("r", offset=10) == b"abcdef"
    assert fake.calls("files/download")[-1].headers["range"] == "bytes=10-"
    assert dbx.get("r", offset=16) == b""  # the very end: 416 from Dropbox, b"" by contract
    assert dbx.get("r", offset=3, length=0) == b""
    with pytest.raises(InvalidRange):
        dbx.get("r", offset=17)
    with pytest.raises(InvalidRange):
        dbx.get("r", offset=12, length=5)
    with pytest.raises(NotFound):
        dbx.get("missing", offset=1, length=2)


def test_listing_pages_with_continue_and_skips_foreign_entries(fake, dbx, root):
    for i in range(120):
        dbx.put(f"many/{i:04d}", b"x")
    dbx._dbx.files_upload(b"f", f"{root}/many/Not A Key.txt")  # put there by hand in the Dropbox app
    assert [i.key for i in dbx.list("many/")] == [f"many/{i:04d}" for i in range(120)]
    assert [c.route for c in fake.calls("list_folder")][-3:] == \
        ["files/list_folder", "files/list_folder/continue", "files/list_folder/continue"]
    info = next(iter(dbx.list("many/0001")))
    assert (info.key, info.size) == ("many/0001", 1) and info.mtime.tzinfo is not None and len(info.etag) == 64


def test_delete_never_removes_a_folder(fake, dbx):
    dbx.put("data/00/a", b"1")
    with pytest.raises(BackendError, match="is a folder"):
        dbx.delete("data/00")
    assert dbx.get("data/00/a") == b"1"
    dbx.delete("data/00/a")
    dbx.delete("data/00/a")
    assert [c.status for c in fake.calls("delete_v2")] == [200]  # the second delete found nothing to do


# -- throttling, quotas, integrity -------------------------------------------------------------------


def test_throttling_burst_is_survived_under_retry_middleware(fake, token_file, root):
    be = retrying(open_dropbox(fake, token_file, root, max_retries_on_error=0))
    fake.add_fault("^files/upload$", "rate_limit", times=2, retry_after=1)
    fake.add_fault("^files/upload$", "write_ops", retry_after=1)
    fake.add_fault("^files/upload$", "unavailable")
    fake.add_fault("^files/upload$", "reset")
    started = time.monotonic()
    be.put("data/k", b"payload")
    elapsed = time.monotonic() - started
    calls = fake.calls("^files/upload$")
    assert [(c.fault, c.status) for c in calls] == [("rate_limit", 429), ("rate_limit", 429), ("write_ops", 429),
                                                    ("unavailable", 503), ("reset", -1), ("", 200)]
    gaps = [b.at - a.at for a, b in zip(calls, calls[1:])]
    assert all(g >= 0.95 for g in gaps[:3]), gaps  # Retry-After: 1 honoured each time
    assert all(g < 1.0 for g in gaps[3:]), gaps  # no hint: short jittered backoff
    assert 3.0 <= elapsed < 6.0
    assert be.retries == 5
    assert be.get("data/k") == b"payload"


def test_throttling_reaches_the_caller_as_transient_with_retry_after(fake, dbx):
    fake.add_fault("files/get_metadata", "write_ops", retry_after=7)
    with pytest.raises(TransientError) as info:
        dbx.head("k")
    assert info.value.retry_after == 7.0 and "too_many_write_operations" in str(info.value)


def test_insufficient_space_is_quota_exceeded_and_not_retried(fake, token_file, root):
    be = retrying(open_dropbox(fake, token_file, root))
    be.put("data/small", b"x" * 100)
    fake.quota = sum(len(f.data) for f in fake.files.values()) + 1000
    with pytest.raises(QuotaExceeded, match="out of space"):
        be.put("data/one-call", b"y" * 2000)
    with pytest.raises(QuotaExceeded):
        be.put("data/session", os.urandom(9 << 20))
    assert [c.status for c in fake.calls(r"files/upload$|finish")] == [200, 409, 409]  # each tried once
    be.put("data/fits", b"z" * 500)
    with pytest.raises(NotFound):
        be.head("data/one-call")


def test_content_hash_mismatch_is_caught_by_dropbox_and_retried(fake, token_file, root):
    be = open_dropbox(fake, token_file, root)
    with pytest.raises(dbx_exc.ApiError) as info:  # what Dropbox answers to bytes that do not match the hash
        be._dbx.files_upload(b"abc", f"{root}/x", content_hash="0" * 64)
    assert info.value.error.is_content_hash_mismatch()
    assert isinstance(translate(info.value, "x"), TransientError)
    with pytest.raises(NotFound):
        be.head("x")
    # corrupted in transit: the SDK's content_hash catches it, the retry stores the right bytes
    fake.add_fault("^files/upload$", "corrupt")
    fake.add_fault("append_v2", "corrupt")
    big = os.urandom(9 << 20)
    retrying(be).put("data/small", b"precious")
    retrying(be).put("data/big", big)
    assert be.get("data/small") == b"precious" and be.get("data/big") == big
    assert [(c.fault, c.status) for c in fake.calls("^files/upload$")][-2:] == [("corrupt", 409), ("", 200)]
    assert [c.status for c in fake.calls("append_v2")] == [409, 200]


# -- tokens and login ---------------------------------------------------------------------------------


def test_revoked_token_is_an_auth_error_with_the_login_hint(fake, token_file, root):
    be = retrying(open_dropbox(fake, token_file, root))
    be.put("k", b"v")
    fake.revoke(load_token(token_file)["refresh_token"])
    before = len(fake.calls())
    with pytest.raises(AuthError, match=r"run `agent login dropbox` again"):
        be.get("k")  # 401 invalid_access_token
    assert len(fake.calls()) == before + 1  # not retried
    with open_dropbox(fake, token_file, root) as fresh, \
            pytest.raises(AuthError, match=r"run `agent login dropbox` again"):
        fresh.get("k")  # the refresh itself is refused: invalid_grant


def test_expired_access_token_is_refreshed_by_the_sdk(fake, dbx):
    dbx.put("k", b"v")
    refreshes = len(fake.calls("oauth2/token"))
    fake.expire_access_tokens()
    assert dbx.get("k") == b"v"
    assert len(fake.calls("oauth2/token")) == refreshes + 1
    assert [c.status for c in fake.calls("files/download")] == [401, 200]


def test_missing_or_broken_token_file(tmp_path, fake):
    url = urlsplit("dropbox:///Backups/x")
    with pytest.raises(AuthError, match=r"run `agent login dropbox`"):
        DropboxBackend.from_url(url, {}, token_file=tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"app_key": "k"}')
    with pytest.raises(AuthError, match="refresh_token"):
        DropboxBackend.from_url(url, {}, token_file=tmp_path / "bad.json")


def test_token_file_is_written_0600_atomically(tmp_path, monkeypatch):
    path = tmp_path / "cfg" / "tokens" / "dropbox.json"
    monkeypatch.setenv("AGENT_DROPBOX_TOKEN_FILE", str(path))
    assert default_token_path() == path
    save_token(path, {"app_key": "a", "refresh_token": "r1"})
    save_token(path, {"app_key": "a", "refresh_token": "r2"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token()["refresh_token"] == "r2"
    assert os.listdir(path.parent) == ["dropbox.json"]  # no temp file left behind


_LOGIN_SCRIPT = textwrap.dedent("""
    import sys, requests
    from backends.dropbox.auth import login
    host, ca, token_path, tamper = sys.argv[1:]
    def prompt(url):  # the user opens the URL, approves the app and pastes the code
        code = requests.post(f"https://{host}/test/approve", data=url, verify=ca).text
        return code + tamper
    try:
        login(token_path, "%s", prompt)
    except Exception as exc:
        print(type(exc).__name__, exc)
        sys.exit(3)
""" % APP_KEY)


def test_login_pkce_flow_stores_a_working_refresh_token(fake, tmp_path, root):
    """In a subprocess: the SDK's OAuth flow reads its hosts from the environment at import time."""
    env = {**os.environ, "DROPBOX_API_HOST": fake.host, "REQUESTS_CA_BUNDLE": str(fake.ca)}
    token_path = tmp_path / "login" / "dropbox.json"

    def run(tamper: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _LOGIN_SCRIPT, fake.host, str(fake.ca), str(token_path),
                               tamper], env=env, capture_output=True, text=True, timeout=60)

    done = run("")
    assert done.returncode == 0, done.stdout + done.stderr
    approval = fake.approvals[-1]
    assert approval["client_id"] == APP_KEY and approval["token_access_type"] == "offline"
    assert approval["code_challenge_method"] == "S256"
    assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    token = load_token(token_path)
    assert token["app_key"] == APP_KEY and token["account_id"] == "dbid:FAKEACCOUNT"
    with open_dropbox(fake, token_path, root) as be:  # the stored refresh token works
        be.put("k", b"v")
        assert be.get("k") == b"v"
    refused = run("-wrong")
    assert refused.returncode == 3 and "AuthError" in refused.stdout and "agent login dropbox" in refused.stdout
    assert load_token(token_path) == token  # a failed login leaves the old token alone


# -- URLs ---------------------------------------------------------------------------------------------


def test_url_forms_and_location(fake, token_file):
    for url, root in (("dropbox:///Backups/office-server", "/Backups/office-server"),
                      ("dropbox://Backups/office-server/", "/Backups/office-server"), ("dropbox:///", "")):
        be = DropboxBackend.from_url(urlsplit(url), {}, token_file=token_file)
        assert be._root == root
        assert be.location == f"dropbox://{root or '/'}"
    be = open_dropbox(fake, token_file, "/B/x")
    assert be.location == f"dropbox:///B/x at {fake.host}" and "refresh" not in be.location
    with pytest.raises(BackendError, match="unknown dropbox:// option"):
        DropboxBackend.from_url(urlsplit("dropbox:///x"), {"token": "t"}, token_file=token_file)
    with pytest.raises(BackendError, match="credentials never go"):
        DropboxBackend.from_url(urlsplit("dropbox://u:p@host/x"), {}, token_file=token_file)


def test_app_folder_root(fake, token_file):
    """dropbox:/// stores at the top of the app folder; keys map to paths directly below it."""
    with open_dropbox(fake, token_file, "") as be:
        key = f"t-{uuid.uuid4().hex[:8]}/obj"
        be.put(key, b"1")
        assert f"/{key}" in fake.files
        assert [i.key for i in be.list(key.split("/")[0] + "/")] == [key]
        be.delete(key)


def test_registry_opens_dropbox_urls(fake, token_file, root, monkeypatch):
    from backends.registry import open_backend

    monkeypatch.setenv("AGENT_DROPBOX_TOKEN_FILE", str(token_file))
    try:
        be = open_backend(f"dropbox://{root}?endpoint={fake.host}&ca={fake.ca}")
    except BackendError as exc:
        if "unknown repository scheme" in str(exc):
            pytest.skip("backends/registry.py has no dropbox line yet")
        raise
    with be:
        assert isinstance(be, DropboxBackend)
        be.put("k", b"v")
        assert be.get("k") == b"v"
