"""Ctrl-C: the command stops with exit status 130 and says so (agent.errors.Interrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from tests.conftest import AGENT


def _wait_for_child(pid: int, name: str, timeout: float = 30.0) -> None:
    """Until process `pid` has a child called `name` (from /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if comm == name and int(rest[1]) == pid:
                return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started no {name!r} within {timeout} s")


def test_ctrl_c_exits_130_with_a_message(cli, tmp_path):
    cli("init")
    # waiting for a passphrase command that takes its time: the command is surely running
    cli.env.update(AGENT_PASSPHRASE_FILE="", AGENT_PASSPHRASE_COMMAND="sleep 60")
    # as from a terminal: a test worker (pytest-xdist) ignores SIGINT, and an ignored signal is
    # inherited across exec, so the child gets the default disposition back first
    proc = subprocess.Popen([*AGENT, "snapshots"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_child(proc.pid, "sleep")  # a fixed pause raced a slow start on a loaded machine
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # the sleep child is killed with the command
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert b"error: interrupted; the next run resumes from what was saved" in err
    assert b"Traceback" not in err
