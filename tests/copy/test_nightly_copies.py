"""`agent run` with `[[copies]]`: after the backups, the night's snapshots go to the target; the run
reports each copy (text, JSON, metrics), and a target that cannot be opened fails the run clearly."""

from __future__ import annotations

import os
from pathlib import Path

MiB = 1 << 20


def _config(tmp_path: Path, cli, target_pass: Path, **copy) -> Path:
    img = tmp_path / "a.img"
    if not img.exists():
        img.write_bytes(os.urandom(3 * MiB) + bytes(MiB))
    extra = "".join(f'{k} = "{v}"\n' for k, v in copy.items())
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
repository = "{cli.repo}"
passphrase_file = "{cli.passfile}"
host = "office"

[[sources]]
name = "a"
path = "{img}"

[[copies]]
name = "offsite"
repository = "{tmp_path / 'b'}"
passphrase_file = "{target_pass}"
sources = ["a"]
{extra}
[copies.limits]
upload = "50MiB/s"

[metrics]
textfile = "{tmp_path / 'agent.prom'}"
""")
    cfg.chmod(0o600)
    return cfg


def test_run_copies_after_backups_and_reports_them(cli, tmp_path):
    target_pass = tmp_path / "b-pass"
    target_pass.write_text("off-site\n")
    cli("init")
    cli("--repo", str(tmp_path / "b"), "--passphrase-file", str(target_pass), "init", "--from-repo", str(cli.repo),
        "--from-passphrase-file", str(cli.passfile))
    cfg = _config(tmp_path, cli, target_pass)
    env = {"AGENT_STATE_DIR": str(tmp_path / "state")}
    out = cli("--config", str(cfg), "run", env=env).out
    assert "copy offsite to" in out and "1 snapshot(s) copied" in out
    summary = cli("--config", str(cfg), "run", "--json", env=env).json()
    assert [c["status"] for c in summary["copies"]] == ["ok"] and summary["copies"][0]["copied"] == 1
    assert summary["copies"][0]["skipped"] == 1 and summary["exit_code"] == 0
    assert 'agent_copy_status{copy="offsite"} 1' in (tmp_path / "agent.prom").read_text()
    snaps = cli("--repo", str(tmp_path / "b"), "--passphrase-file", str(target_pass), "snapshots",
                "--json").json()["snapshots"]
    assert len(snaps) == 2 and {s["host"] for s in snaps} == {"office"}
    cli("--repo", str(tmp_path / "b"), "--passphrase-file", str(target_pass), "restore", "latest",
        "--to", str(tmp_path / "r.img"))
    assert (tmp_path / "r.img").read_bytes() == (tmp_path / "a.img").read_bytes()


def test_a_copy_with_the_wrong_passphrase_fails_the_run_with_one_line(cli, tmp_path):
    target_pass = tmp_path / "b-pass"
    target_pass.write_text("off-site\n")
    cli("init")
    cli("--repo", str(tmp_path / "b"), "--passphrase-file", str(target_pass), "init", "--from-repo", str(cli.repo),
        "--from-passphrase-file", str(cli.passfile))
    target_pass.write_text("something else\n")
    cfg = _config(tmp_path, cli, target_pass)
    res = cli("--config", str(cfg), "run", "--json", env={"AGENT_STATE_DIR": str(tmp_path / "state")}, check=False)
    summary = res.json()
    assert res.code == 1 and summary["sources"][0]["status"] == "ok"  # the backup itself is kept
    copy = summary["copies"][0]
    assert copy["status"] == "failed" and "target repository passphrase: wrong passphrase" in copy["error"]
    assert "Traceback" not in res.err and "something else" not in res.out + res.err
