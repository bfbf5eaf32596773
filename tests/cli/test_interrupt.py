"""Ctrl-C: the command stops with exit status 130 and says so (agent.errors.Interrupted)."""

from __future__ import annotations

import signal
import time


def test_ctrl_c_exits_130_with_a_message(cli, tmp_path):
    cli("init")
    # waiting for a passphrase command that takes its time: the command is surely running
    cli.env.update(AGENT_PASSPHRASE_FILE="", AGENT_PASSPHRASE_COMMAND="sleep 60")
    proc = cli.popen("snapshots")
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # the sleep child is killed with the command
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert b"error: interrupted; the next run resumes from what was saved" in err
    assert b"Traceback" not in err
