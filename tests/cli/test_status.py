"""`agent status`, its web page and `agent serve`, on one repository written by four hosts with the real
`agent backup`: one healthy, one whose last run failed, one last seen three days ago, one whose last
run was stopped by its window. The page is rendered by a real headless chromium."""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.conftest import AGENT, Cli

MiB = 1 << 20
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps)")


def _ago(**kw) -> str:
    return (datetime.now(UTC) - timedelta(**kw)).isoformat(timespec="seconds")


def _image(path: Path, mib: int) -> str:
    path.write_bytes(os.urandom(mib * MiB))
    return str(path)


def _record_failed_run(cli: Cli, host: str, source: str, reason: str) -> None:
    """What `agent backup` leaves when a run fails mid-way (agent.backup.run._record_failure), written
    through the repository's own API: no disk here fails on demand."""
    from agent.repo.cache import ObjectCache
    from agent.repo.repository import Repository
    from agent.repo.runs import RunRecord
    from backends.local import LocalBackend

    now = datetime.now(UTC).isoformat()
    repo = Repository.open(LocalBackend(cli.repo), cli.passfile.read_text().strip().encode(), cache=ObjectCache(None))
    try:
        repo.save_run(RunRecord(status="failed", reason=reason, host=host, source=source, started=now, stopped=now,
                                source_bytes=MiB, done_bytes=MiB // 2))
    finally:
        repo.close()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fleet")
    cli = Cli(tmp)
    cli("init", "--pack-size", "1")
    web = _image(tmp / "web1.img", 2)
    cli("backup", web, "--host", "web1", "--time", _ago(days=1))
    cli("backup", web, "--host", "web1")  # healthy: backed up now, twice (a trend)

    db = _image(tmp / "db1.img", 2)
    cli("backup", db, "--host", "db1", "--time", _ago(hours=12))
    _record_failed_run(cli, "db1", db, "cannot read /dev/sdb at byte 1048576: Input/output error")

    old = _image(tmp / "laptop.img", 1)
    cli("backup", old, "--host", "laptop", "--time", _ago(days=3))  # last seen three days ago

    nas = tmp / "nas.img"
    _image(nas, 1)
    cli("backup", str(nas), "--host", "nas", "--time", _ago(hours=20))
    _image(nas, 8)  # new data the window is too short for
    stopped = cli("backup", str(nas), "--host", "nas", "--limit-upload", "1MiB/s", "--max-duration", "1s",
                  check=False)
    assert stopped.code == 3, stopped.err
    return cli


def test_status_flags_each_host_and_exits_6(fleet):
    res = fleet("status", "--json", check=False)
    assert res.code == 6, res.err
    assert "3 of 4 source(s) need attention" in res.err and "Traceback" not in res.err
    data = res.json()
    by_host = {s["host"]: s for s in data["sources"]}
    assert set(by_host) == {"web1", "db1", "laptop", "nas"} and data["hosts"] == 4 and data["flagged"] == 3
    assert by_host["web1"]["flags"] == [] and by_host["web1"]["snapshots"] == 2
    assert by_host["db1"]["flags"] == ["failed"]
    assert "Input/output error" in by_host["db1"]["last_problem"]["reason"]
    assert by_host["laptop"]["flags"] == ["stale"] and 3 * 86400 - 120 < by_host["laptop"]["age_s"] < 3 * 86400 + 600
    assert by_host["nas"]["flags"] == ["incomplete"]
    assert "deadline" in by_host["nas"]["last_problem"]["reason"]
    web = by_host["web1"]["last_success"]
    assert web["size"] == 2 * MiB and web["new_bytes"] == 0 and len(by_host["web1"]["nights"]) == 2
    assert by_host["web1"]["nights"][0]["new_bytes"] == 2 * MiB
    assert data["snapshots"] == 5 and data["locks"] == []
    assert data["storage"][-1]["stored_bytes"] <= data["repository_bytes"]

    # a longer threshold clears the stale flag; the text view names the flags too
    assert [s["flags"] for s in fleet("status", "--json", "--stale-after", "4d", check=False).json()["sources"]
            if s["host"] == "laptop"] == [[]]
    text = fleet("status", check=False)
    assert text.code == 6 and "laptop" in text.out and "stale" in text.out and "failed" in text.out


def test_stale_threshold_per_host_from_the_config_file(fleet, tmp_path):
    config = tmp_path / "agent.toml"
    config.write_text('[status]\nstale_after = "36h"\nstale_after_for = { "lap*" = "7d", "web1" = "1h" }\n')
    data = fleet("--config", str(config), "status", "--json", check=False).json()
    flags = {s["host"]: s["flags"] for s in data["sources"]}
    assert flags["laptop"] == [] and flags["web1"] == [] and flags["db1"] == ["failed"]
    bad = tmp_path / "bad.toml"
    bad.write_text('[status]\nstale_after = "soon"\n')
    res = fleet("--config", str(bad), "status", check=False)
    assert res.code == 2 and "status.stale_after" in res.err and "Traceback" not in res.err


def test_only_a_healthy_host_exits_0(tmp_path):
    cli = Cli(tmp_path)
    cli("init")
    cli("backup", _image(tmp_path / "a.img", 1), "--host", "solo")
    res = cli("status", "--json")
    assert res.code == 0 and res.json()["flagged"] == 0 and res.json()["ok"] is True



def test_damage_that_check_recorded_makes_status_say_so_and_exit_6(tmp_path):
    """A flipped byte in a pack: `check --read-data` records it, and status (which reads only
    metadata) then reports the damaged pack, on the page too, and exits 6."""
    cli = Cli(tmp_path)
    cli("init")
    cli("backup", _image(tmp_path / "a.img", 2), "--host", "solo")
    assert cli("status").code == 0
    pack = max((p for p in (cli.repo / "data").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(pack.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    pack.write_bytes(bytes(raw))
    assert cli("check", "--read-data", check=False).code == 14
    res = cli("status", "--json", "--html", str(tmp_path / "page.html"), check=False)
    assert res.code == 6, res.err
    data = res.json()
    assert data["ok"] is False and data["check"]["packs"] == 1 and data["flagged"] == 0
    assert "damaged pack(s)" in res.err
    assert 'data-field="check_packs" data-value="1"' in (tmp_path / "page.html").read_text()


# ---- the web page in a real browser ---------------------------------------------------------------

class _Dom(HTMLParser):
    """The data-value of every data-field inside each fleet row, from chromium's rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        self.top: dict[str, str] = {}
        self.row: dict[str, str] | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for attr in ("src", "href"):
            if a.get(attr):
                self.external.append(a[attr] or "")
        if tag == "tr" and "source" in (a.get("class") or "").split():
            self.row = self.rows.setdefault((a["data-host"] or "", a["data-source"] or ""), {})
        elif "data-field" in a:
            (self.row if self.row is not None else self.top)[a["data-field"] or ""] = a.get("data-value") or ""

    def handle_endtag(self, tag):
        if tag == "tr":
            self.row = None


def _chromium(url: str, *extra: str) -> tuple[str, list[str]]:
    """The rendered DOM and the console messages of `url`."""
    assert CHROMIUM is not None
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *extra, url], capture_output=True, text=True, timeout=120)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def _same(shown: str, value) -> bool:
    return shown == "" if value is None else float(shown) == pytest.approx(float(value))


@needs_chromium
def test_page_renders_without_console_errors_and_shows_the_json_numbers(fleet, tmp_path):
    page = tmp_path / "status.html"
    res = fleet("status", "--json", "--html", str(page), check=False)
    data = res.json()
    dom, console = _chromium(page.as_uri(), "--dump-dom")
    assert console == [], console
    parsed = _Dom()
    parsed.feed(dom)
    assert parsed.external == []  # self-contained: nothing to fetch
    assert "<svg" in dom and "<script" not in dom
    assert _same(parsed.top["hosts"], data["hosts"]) and _same(parsed.top["snapshots"], data["snapshots"])
    assert _same(parsed.top["repository_bytes"], data["repository_bytes"])
    assert len(parsed.rows) == len(data["sources"]) == 4
    for s in data["sources"]:
        row = parsed.rows[(s["host"], s["source"])]
        last = s["last_success"] or {}
        assert _same(row["snapshots"], s["snapshots"]) and _same(row["age_s"], s["age_s"])
        assert _same(row["last_size"], last.get("size")) and _same(row["last_new_bytes"], last.get("new_bytes"))
        assert _same(row["new_bytes_trend"], s["new_bytes_trend"])
        assert row["flags"] == ",".join(s["flags"])


@needs_chromium
def test_the_console_check_catches_an_error(tmp_path):
    """The control for the test above: a page with a script error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>undefined_function()</script></body></html>")
    _, console = _chromium(bad.as_uri(), "--dump-dom")
    assert any("undefined_function" in line for line in console)


@needs_chromium
def test_screenshot_for_the_docs(fleet, tmp_path):
    """Regenerates docs/img/status.png when AGENT_UPDATE_SCREENSHOT=1; otherwise checks one can be taken."""
    page = tmp_path / "status.html"
    fleet("status", "--html", str(page), check=False)
    shot = tmp_path / "status.png"
    _chromium(page.as_uri(), f"--screenshot={shot}", "--window-size=1200,1100", "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("AGENT_UPDATE_SCREENSHOT") == "1":
        shutil.copy(shot, Path(__file__).parents[2] / "docs" / "img" / "status.png")


# ---- agent serve ------------------------------------------------------------------------------------

def _serve(cli: Cli, *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*AGENT, "serve", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=cli.env, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    m = re.search(r"(https?://\S+/)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, m[1]


def _get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, ""


def test_serve_refuses_a_public_bind_without_auth(fleet):
    res = fleet("serve", "--bind", "0.0.0.0", "--port", "0", check=False, timeout=30)
    assert res.code == 2 and "refusing to serve on 0.0.0.0 without authentication" in res.err
    assert "Traceback" not in res.err


def test_serve_with_basic_auth_rejects_wrong_credentials_and_never_writes(fleet, tmp_path):
    auth = tmp_path / "auth"
    auth.write_text("admin:s3cret-pass\n")
    auth.chmod(0o600)
    before = sorted(str(p.relative_to(fleet.repo)) for p in fleet.repo.rglob("*") if p.is_file())
    proc, url = _serve(fleet, "--bind", "0.0.0.0", "--auth-file", str(auth))
    try:
        local = url.replace("0.0.0.0", "127.0.0.1")
        assert _get(local)[0] == 401
        assert _get(local, ("admin", "wrong"))[0] == 401
        assert _get(local, ("someone", "s3cret-pass"))[0] == 401
        code, page = _get(local, ("admin", "s3cret-pass"))
        assert code == 200 and "db1" in page and 'http-equiv="refresh"' in page
        code, body = _get(local + "status.json", ("admin", "s3cret-pass"))
        assert code == 200 and {s["host"] for s in json.loads(body)["sources"]} == {"web1", "db1", "laptop", "nas"}
        req = urllib.request.Request(local, data=b"x", method="POST")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:s3cret-pass").decode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 405
        err.value.close()
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "s3cret-pass" not in stderr
    after = sorted(str(p.relative_to(fleet.repo)) for p in fleet.repo.rglob("*") if p.is_file())
    assert after == before  # read-only: not even a lock was written


def test_serve_over_tls_with_auth_on_a_public_bind(fleet, tmp_path):
    """--tls-cert/--tls-key: the page is served over HTTPS (verified against the certificate), plain
    HTTP to the same port gets no page, and credentials still decide."""
    import ssl

    from tests.servers.tls import self_signed

    cert, key = self_signed(tmp_path / "tls")
    auth = tmp_path / "auth"
    auth.write_text("admin:s3cret-pass\n")
    auth.chmod(0o600)
    proc, url = _serve(fleet, "--bind", "0.0.0.0", "--auth-file", str(auth), "--tls-cert", str(cert),
                       "--tls-key", str(key))
    try:
        assert url.startswith("https://"), url
        local = url.replace("0.0.0.0", "127.0.0.1")
        ctx = ssl.create_default_context(cafile=str(cert))
        req = urllib.request.Request(local)
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:s3cret-pass").decode())
        with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
            assert resp.status == 200 and "db1" in resp.read().decode()
        bad = urllib.request.Request(local)
        bad.add_header("Authorization", "Basic " + base64.b64encode(b"admin:wrong").decode())
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(bad, timeout=30, context=ctx)
        assert err.value.code == 401
        err.value.close()
        with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
            urllib.request.urlopen(local.replace("https://", "http://"), timeout=30)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
