"""Progress as an unattended run shows it: plain periodic lines when not on a terminal, JSON lines
with --json, nothing but results with --quiet."""

from __future__ import annotations

import json
import os

MiB = 1 << 20


def _image(tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(40 * MiB))
    return img


def test_plain_lines_when_not_on_a_terminal_and_silence_with_quiet(tmp_path, cli):
    img = _image(tmp_path)
    cli("init")
    res = cli("backup", str(img), "--limit-upload", "20MiB/s", env={"AGENT_PROGRESS_INTERVAL": "0.2"})
    lines = [ln for ln in res.err.splitlines() if ln.startswith("backup: ")]
    assert lines, res.err
    assert " of 40.0 MiB (" in lines[-1] and "uploaded" in lines[-1] and "MiB/s" in lines[-1]
    quiet = cli("--quiet", "backup", str(img), env={"AGENT_PROGRESS_INTERVAL": "0.01"})
    assert quiet.err == "" and "saved" in quiet.out


def test_json_lines_progress_then_one_summary(tmp_path, cli):
    img = _image(tmp_path)
    cli("init")
    res = cli("backup", str(img), "--json", "--limit-upload", "20MiB/s")
    events = [json.loads(ln) for ln in res.out.strip().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "backup" and kinds.count("backup") == 1
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["done_bytes"] == 40 * MiB and progress[-1]["total_bytes"] == 40 * MiB
    assert all(a["done_bytes"] <= b["done_bytes"] for a, b in zip(progress, progress[1:]))
    assert events[-1]["uploaded_bytes"] >= 40 * MiB


def test_syslog_receives_warnings_and_the_outcome(tmp_path, cli):
    """A real datagram socket stands in for /dev/log (AGENT_SYSLOG_SOCKET), as rsyslog or journald bind it."""
    import socket

    path = tmp_path / "log"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        img = _image(tmp_path)
        cli("init")
        res = cli("--syslog", "backup", str(img), "--max-duration", "0s", check=False,
                  env={"AGENT_SYSLOG_SOCKET": str(path)})
        assert "not logging to syslog" not in res.err
        messages = []
        while True:
            try:
                messages.append(sock.recv(65536).decode())
            except TimeoutError:
                break
            if any("incomplete" in m for m in messages):
                break
    finally:
        sock.close()
    assert any("agent[" in m and "incomplete" in m and str(img) in m for m in messages), messages


def test_syslog_without_a_socket_says_so_instead_of_sending_to_udp_514(tmp_path, cli):
    """issue 24: without /dev/log the handler went to localhost:514 over UDP, silently; nothing may listen."""
    cli("init")
    missing = tmp_path / "no-such-log"
    res = cli("--syslog", "snapshots", env={"AGENT_SYSLOG_SOCKET": str(missing)})
    assert f"warning: not logging to syslog: its socket {missing} does not exist" in res.err, res.err
    assert "0 snapshot(s)" in res.err and res.code == 0  # the command itself still runs
