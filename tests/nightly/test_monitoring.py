"""Monitoring people already run: healthchecks.io-style pings per source, Apprise URLs and the Prometheus
textfiles, each against a real receiver on loopback and read back with prometheus_client's own parser."""

from __future__ import annotations

import json
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.nightly.healthchecks import ping

MiB = 1 << 20


@dataclass
class Receiver:
    url: str
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, body)
    status: int = 200


@contextmanager
def receiver() -> Iterator[Receiver]:
    """A tiny HTTP server on 127.0.0.1 recording every GET and POST, as hc-ping.com or an Apprise json:// target."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            with lock:
                rec.seen.append((self.command, self.path, body))
            self.send_response(rec.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = _record

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec = Receiver(f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def _families(path: Path) -> dict:
    """{(name, sorted labels): value} parsed by prometheus_client (raises on any syntax error)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(path.read_text()) for s in f.samples}


def test_run_pings_each_job_notifies_apprise_and_writes_a_parsable_textfile(tmp_path, cli):
    pytest.importorskip("apprise")
    good = tmp_path / "good.img"
    good.write_bytes(os.urandom(2 * MiB))
    cli("init")
    prom = tmp_path / "agent.prom"
    with receiver() as hc, receiver() as alerts:
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f"""
repository = "{cli.repo}"
passphrase_file = "{cli.passfile}"
host = "office"

[[sources]]
name = "system"
path = "{good}"
healthcheck = "{hc.url}/ping/uuid-system"

[[sources]]
name = "data"
path = "{tmp_path / 'missing.img'}"
healthcheck = "{hc.url}/ping/uuid-data/"

[notify.apprise]
urls = ["json://127.0.0.1:{alerts.url.rsplit(':', 1)[1]}/alerts"]

[metrics]
textfile = "{prom}"
""")
        cfg.chmod(0o600)
        res = cli("--config", str(cfg), "run", check=False)
    assert res.code == 1, res.err
    pings = [(m, p) for m, p, _ in hc.seen]
    assert pings == [("GET", "/ping/uuid-system/start"), ("POST", "/ping/uuid-system"),
                     ("GET", "/ping/uuid-data/start"), ("POST", "/ping/uuid-data/fail")]
    fail_body = hc.seen[-1][2]
    assert fail_body.startswith("failed: ") and "missing.img" in fail_body
    assert "snapshot " in hc.seen[1][2]

    [(method, path, body)] = alerts.seen
    alert = json.loads(body)
    assert (method, path, alert["type"]) == ("POST", "/alerts", "failure")
    assert "FAILURE on office" in alert["title"] and "missing.img" in alert["message"]

    m = _families(prom)
    assert m[("agent_last_run_success", ())] == 0 and m[("agent_last_run_exit_code", ())] == 1
    assert m[("agent_source_status", (("source", "system"),))] == 1
    assert m[("agent_source_status", (("source", "data"),))] == 0
    assert m[("agent_source_read_bytes", (("source", "system"),))] == 2 * MiB


def test_an_unreachable_ping_is_a_warning_not_a_failure(tmp_path, cli):
    img = tmp_path / "a.img"
    img.write_bytes(os.urandom(MiB))
    cli("init")
    with receiver() as hc:
        hc.status = 500
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f'repository = "{cli.repo}"\npassphrase_file = "{cli.passfile}"\n\n[[sources]]\n'
                       f'name = "a"\npath = "{img}"\nhealthcheck = "{hc.url}/secret-uuid"\n')
        res = cli("--config", str(cfg), "run", check=False)
    assert res.code == 0, res.err  # the backup worked; only its monitoring did not
    assert "healthcheck ping (start)" in res.err and "HTTP 500" in res.err
    assert "secret-uuid" not in res.err  # the path of a ping URL is its secret


def test_ping_reports_an_unreachable_host_in_one_line():
    problem = ping("http://127.0.0.1:9/abc-uuid", "fail", "reason", timeout_s=2)
    assert problem is not None and "abc-uuid" not in problem and "\n" not in problem


def test_bad_ping_and_apprise_urls_are_config_errors(tmp_path, cli):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[[sources]]\nname = "a"\npath = "/x"\nhealthcheck = "ftp://host/x"\n\n'
                   '[notify.apprise]\nurls = ["no-scheme-token-123"]\n')
    cfg.chmod(0o600)
    res = cli("--config", str(cfg), "status", check=False)
    assert res.code == 2 and "sources[0].healthcheck" in res.err and "notify.apprise.urls" in res.err
    assert "no-scheme-token-123" not in res.err and "Traceback" not in res.err
    cfg.write_text('[notify.apprise]\nurls = "tgram://bottoken/chat"\n')
    cfg.chmod(0o644)
    res = cli("--config", str(cfg), "status", check=False)
    assert res.code == 2 and "notify.apprise.urls" in res.err and "chmod 600" in res.err


def test_status_writes_per_host_staleness_for_prometheus(tmp_path, cli):
    cli("init")
    img = tmp_path / "a.img"
    img.write_bytes(os.urandom(MiB))
    cli("backup", str(img), "--host", "fresh")
    cli("backup", str(img), "--host", "old", "--time", "2020-01-01T00:00:00+00:00")
    prom = tmp_path / "fleet.prom"
    res = cli("status", "--prometheus", str(prom), check=False)
    assert res.code == 6
    m = _families(prom)
    assert m[("agent_fleet_sources", ())] == 2 and m[("agent_fleet_flagged_sources", ())] == 1
    assert m[("agent_fleet_stale", (("host", "old"), ("source", str(img))))] == 1
    assert m[("agent_fleet_stale", (("host", "fresh"), ("source", str(img))))] == 0
    assert m[("agent_fleet_last_success_timestamp_seconds", (("host", "old"), ("source", str(img))))] == 1577836800
    assert (prom.stat().st_mode & 0o777) == 0o644
