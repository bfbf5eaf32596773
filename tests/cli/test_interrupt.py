"""Ctrl-C: the command stops with exit status 130 and says so (agent.errors.Interrupted)."""

from __future__ import annotations

import os
import signal
import time


def test_ctrl_c_exits_130_with_a_message(cli, tmp_path):
    cli("init")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: the command is surely running
    proc = cli.popen("backup", str(fifo))
    try:
        time.sleep(1.5)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert b"error: interrupted; the next run resumes from what was saved" in err
    assert b"Traceback" not in err
