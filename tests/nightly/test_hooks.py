"""Pre/post hooks with real shell commands: exit codes, output tails, environment, and timeouts that
take the hook's whole process group down with them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from agent.nightly import hooks
from agent.nightly.hooks import HookConfig, hook_env, run_hook, run_source_hook


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for a parent that is not us to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _run(command: str, timeout_s: float = 30, **env: str):
    return run_hook(command, timeout_s=timeout_s, env=env, what="pre hook for system-disk")


def test_success_with_combined_output():
    res = _run("echo to-stdout; echo to-stderr >&2")
    assert res.ok and res.exit_code == 0 and res.error_message is None
    assert res.output_tail.splitlines() == ["to-stdout", "to-stderr"]


def test_failure_names_hook_source_status_and_last_line():
    res = _run("echo working; echo '  Volume group \"vg0\" not found' >&2; exit 5")
    assert not res.ok and res.exit_code == 5
    assert res.error_message == 'pre hook for system-disk failed with exit status 5: Volume group "vg0" not found'


def test_missing_command_and_signal():
    res = _run("no-such-command-for-agent-tests")
    assert res.exit_code == 127 and "not found" in res.error_message
    res = _run("kill -TERM $$")
    assert res.exit_code == -signal.SIGTERM and res.error_message == "pre hook for system-disk was killed by SIGTERM"


def test_only_the_tail_of_the_output_is_kept():
    res = _run("i=0; while [ $i -lt 500 ]; do echo line $i; i=$((i+1)); done; exit 1")
    lines = res.output_tail.splitlines()
    assert len(lines) == hooks.TAIL_LINES and lines[-1] == "line 499" and lines[0] == "line 480"
    assert res.error_message.endswith(": line 499")


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    res = _run(f"sleep 300 & echo $! > {pidfile}; echo snapshot started; wait", timeout_s=1)
    elapsed = time.monotonic() - start
    assert not res.ok and res.exit_code is None
    assert res.error_message == "pre hook for system-disk timed out after 1 s"
    assert "snapshot started" in res.output_tail
    assert 1 <= elapsed < 5
    assert _wait_gone(int(pidfile.read_text()))


def test_timeout_escalates_to_sigkill_for_children_ignoring_sigterm(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = "trap '' TERM; echo $$ > " + str(pidfile) + "; while :; do sleep 0.1; done"
    start = time.monotonic()
    res = _run(f"sh -c \"{script}\" & wait", timeout_s=0.5)
    assert not res.ok and "timed out after 0.5 s" in res.error_message
    assert time.monotonic() - start < 0.5 + hooks._KILL_GRACE_S + 3
    assert _wait_gone(int(pidfile.read_text()))


def test_background_child_holding_the_pipe_does_not_hang(tmp_path):
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    res = _run(f"sleep 60 & echo $! > {pidfile}; echo done")
    try:
        assert res.ok and res.output_tail == "done"
        assert time.monotonic() - start < 10
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)  # the test's own leftover


def test_environment_of_a_post_hook():
    cfg = HookConfig(post='printf "%s|%s|%s|%s|%s|%s\\n" "$AGENT_HOOK" "$AGENT_SOURCE_NAME" "$AGENT_SOURCE_PATH" '
                          '"$AGENT_STATUS" "${AGENT_PASSPHRASE-unset}" "${AWS_SECRET_ACCESS_KEY-unset}"; pwd >&2')
    old = {k: os.environ.get(k) for k in ("AGENT_PASSPHRASE", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AGENT_PASSPHRASE="hunter2", AWS_SECRET_ACCESS_KEY="aws-secret")
    try:
        res = run_source_hook(cfg, "post", "system-disk", "/dev/vg0/nightly", status="failed",
                              hide=["AWS_SECRET_ACCESS_KEY"])
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert res.ok
    assert res.output_tail.splitlines() == ["post|system-disk|/dev/vg0/nightly|failed|unset|unset", "/"]
    assert run_source_hook(cfg, "pre", "system-disk", "/dev/sda") is None  # no pre hook configured
    assert hook_env("pre", "a", "/dev/a") == {"AGENT_HOOK": "pre", "AGENT_SOURCE_NAME": "a",
                                              "AGENT_SOURCE_PATH": "/dev/a"}


def test_lvm_snapshot_example_runs_verbatim(tmp_path):
    """The documented example, against stand-ins for lvcreate/lvremove that record their arguments."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    for tool in ("lvcreate", "lvremove"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $* ($AGENT_HOOK $AGENT_SOURCE_PATH)" >> {log}\n')
        script.chmod(0o755)
    cfg = HookConfig(pre="lvcreate -s -n nightly -L 5G vg0/root", post="lvremove -f vg0/nightly")
    path_env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for hook, status in (("pre", None), ("post", "ok")):
        command = cfg.pre if hook == "pre" else cfg.post
        res = run_hook(command, timeout_s=cfg.timeout_s, what=f"{hook} hook for root",
                       env={**hook_env(hook, "root", "/dev/vg0/nightly", status), **path_env})
        assert res.ok, res
    assert log.read_text().splitlines() == ["lvcreate -s -n nightly -L 5G vg0/root (pre /dev/vg0/nightly)",
                                            "lvremove -f vg0/nightly (post /dev/vg0/nightly)"]


def test_config_model():
    assert HookConfig().timeout_s == 600
    with pytest.raises(ValueError, match="prehook"):
        HookConfig.model_validate({"prehook": "true"})
    with pytest.raises(ValueError):
        HookConfig(timeout_s=0)
