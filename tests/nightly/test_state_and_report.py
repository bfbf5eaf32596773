"""The run report's status rules and JSON form, and the state file `agent schedule status` reads."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest

from agent.errors import AgentError
from agent.nightly.report import SourceReport, summarize
from agent.nightly.state import RunState, default_state_path, load_state, record_finish, record_start, save_state
from tests.nightly.samples import STARTED, failed_source, failing_report, ok_source, report


def test_status_and_exit_code():
    assert (report(ok_source()).status, report(ok_source()).exit_code) == ("success", 0)
    warned = report(ok_source(warnings=["/dev/sda is mounted read-write"]))
    assert (warned.status, warned.exit_code) == ("warning", 3)
    incomplete = report(SourceReport("a", "/dev/a", "incomplete"))
    assert (incomplete.status, incomplete.exit_code) == ("warning", 3)
    assert report(ok_source(), failed_source()).status == "failure"
    run_error = report(ok_source(), errors=["retention failed"])
    assert (run_error.status, run_error.exit_code) == ("failure", 1)
    assert report().status == "success"


def test_summaries():
    assert summarize(report(ok_source(), ok_source("b"))) == "SUCCESS on web1: 2 sources backed up"
    assert summarize(report()) == "SUCCESS on web1: nothing to back up"
    assert summarize(report(ok_source(warnings=["w"]))) == "WARNING on web1: 1 warning"
    assert summarize(failing_report()) == "FAILURE on web1: 1 of 2 sources failed, 1 run error"
    flagged = report(ok_source(), SourceReport("b", "/dev/b", "ok", suspicious={"message": "new data 9 GiB"}))
    assert (flagged.status, flagged.exit_code) == ("warning", 3)
    assert summarize(flagged) == "WARNING on web1: 1 suspicious night (agent ack)"


def test_to_dict_is_json_ready():
    d = json.loads(json.dumps(failing_report().to_dict()))
    assert d["started"] == "2024-05-01T01:00:00Z" and d["duration_s"] == 900
    assert d["status"] == "failure" and d["exit_code"] == 1
    assert d["sources"][1] == {"name": "data-disk", "path": "/dev/sdb", "status": "failed", "snapshot_id": None,
                               "error": "wrong passphrase: no key of this repository opens with it",
                               "hint": "check AGENT_PASSPHRASE_FILE", "read_bytes": 0, "skipped_free_bytes": 0,
                               "new_bytes": 0, "uploaded_bytes": 0, "duration_s": 2.0, "warnings": [], "verify": None,
                               "suspicious": None, "suspicious_unacknowledged": 0}


def test_state_round_trip_is_atomic(tmp_path):
    path = tmp_path / "deep" / "state.json"
    assert load_state(path) is None
    state = RunState(last_started=STARTED, last_finished=STARTED + timedelta(minutes=5), last_status="success",
                     last_exit_code=0, last_summary="SUCCESS on web1: 1 source backed up",
                     last_success=STARTED + timedelta(minutes=5))
    save_state(path, state)
    assert load_state(path) == state
    assert os.listdir(path.parent) == ["state.json"] and (path.stat().st_mode & 0o777) == 0o644


def test_record_start_and_finish_keep_the_last_success(tmp_path):
    path = tmp_path / "state.json"
    good = report(ok_source())
    record_start(path, good.started)
    assert load_state(path).last_started == good.started and load_state(path).last_status is None
    record_finish(path, good)
    later = STARTED + timedelta(days=1)
    s = record_start(path, later)
    assert s.last_started == later and s.last_status == "success"  # the previous result stays visible
    bad = report(failed_source(), started=later)
    s = record_finish(path, bad)
    assert (s.last_status, s.last_exit_code, s.last_finished) == ("failure", 1, bad.finished)
    assert s.last_success == good.finished
    assert load_state(path) == s


def test_damaged_state_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text('{"last_started": "yesterday-ish"}')
    with pytest.raises(AgentError, match="cannot read the run state file"):
        load_state(path)
    s = record_finish(path, report(ok_source()))  # a run replaces it rather than failing
    assert load_state(path) == s


def test_default_state_path(monkeypatch, tmp_path):
    monkeypatch.setenv("AGENT_STATE_DIR", str(tmp_path))
    assert default_state_path() == tmp_path / "state.json"
    monkeypatch.delenv("AGENT_STATE_DIR")
    expected = "/var/lib/agent/state.json" if os.geteuid() == 0 else None
    if expected:
        assert str(default_state_path()) == expected
    else:
        assert default_state_path().parts[-2:] == ("agent", "state.json")


def test_a_verify_in_the_report_decides_status_summary_and_mail_text():
    from agent.nightly.notify import render_text
    from agent.nightly.report import VerifyReport

    clean = VerifyReport("clean", snapshot_id="ab" * 32, fsck=True)
    assert summarize(report(ok_source(verify=clean))) == "SUCCESS on web1: 1 source backed up, 1 verified clean"
    damaged = VerifyReport("damaged", snapshot_id="cd" * 32, fsck=True, partitions=[
        {"number": 2, "filesystem": "ext4", "status": "damaged", "checker": "e2fsck -fn", "exit_status": 4,
         "output": ["Inode 2 ref count is 7, should be 4.  Fix? no"]},
        {"number": 3, "filesystem": None, "status": "not checked", "reason": "no filesystem recognised"}])
    rep = report(ok_source(verify=damaged), ok_source("b"))
    assert (rep.status, rep.exit_code) == ("failure", 1)
    assert summarize(rep) == "FAILURE on web1: 1 of 1 verify damaged"
    text = render_text(rep)
    assert "  verify of snapshot cdcdcdcd (chunks and filesystems): damaged" in text
    assert "    p2 ext4: DAMAGED (e2fsck -fn, exit status 4)\n      Inode 2 ref count is 7" in text
    assert "    p3: not checked (no filesystem recognised)" in text
    failed = VerifyReport("failed", error="the repository has no matching snapshot")
    assert summarize(report(ok_source(verify=failed))) == "FAILURE on web1: 1 of 1 verify failed"
