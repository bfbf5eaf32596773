"""`agent config check` checks more than the file: every source opens for reading, and the repository
is reachable and opens with the passphrase (`--offline`: sources only). One line per check; exit 1
when any fails.

Unreadable sources: the tests run as root, which reads any file whatever its mode, so "cannot be read"
is tested with what root cannot read as a disk either: a directory and a dangling symlink."""

from __future__ import annotations

import json
import socket
from pathlib import Path


def _config(tmp_path: Path, repository: str, sources: dict[str, Path], extra: str = "") -> Path:
    cfg = tmp_path / "agent.toml"
    body = f'repository = "{repository}"\n' + "".join(
        f'[[sources]]\nname = "{name}"\npath = "{path}"\n' for name, path in sources.items()) + extra
    cfg.write_text(body)
    cfg.chmod(0o600)
    return cfg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_good_sources_and_repository_pass(tmp_path, cli):
    cli("init")
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    cfg = _config(tmp_path, str(cli.repo), {"disk": disk})
    res = cli("--config", str(cfg), "config", "check")
    assert f"ok    source disk: {disk} (image file, readable)" in res.out, res.out
    assert f"ok    repository: {cli.repo} is reachable and the passphrase opens it" in res.out, res.out
    doc = cli("--config", str(cfg), "config", "check", "--json").json()
    assert doc["event"] == "config_check" and doc["ok"] is True
    assert [c["check"] for c in doc["checks"]] == ["source disk", "repository"]


def test_missing_directory_and_dangling_sources_fail(tmp_path, cli):
    cli("init")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    cfg = _config(tmp_path, str(cli.repo), {"typo": tmp_path / "dsk.img", "dir": tmp_path, "link": tmp_path / "gone"},
                  extra=f'[[sources]]\nname = "lvm"\npath = "{tmp_path}/snap"\npre = "true"\n')
    res = cli("--config", str(cfg), "config", "check", check=False)
    assert res.code == 1 and "3 check(s) failed" in res.err, res.out + res.err
    assert f"FAIL  source typo: {tmp_path}/dsk.img does not exist" in res.out
    assert f"FAIL  source dir: {tmp_path} is a directory" in res.out
    assert f"FAIL  source link: {tmp_path}/gone does not exist (a symlink to a missing target)" in res.out
    assert "ok    source lvm:" in res.out and "pre hook" in res.out  # made by its pre hook at run time
    assert "ok    repository:" in res.out


def test_wrong_passphrase_fails_and_names_the_repository(tmp_path, cli):
    cli("init")
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    cfg = _config(tmp_path, str(cli.repo), {}, extra=f'passphrase_file = "{wrong}"\n')
    res = cli("--config", str(cfg), "config", "check", "--json", check=False)
    assert res.code == 1
    (repo_check,) = json.loads(res.out)["checks"]
    assert repo_check["ok"] is False and f"repository {cli.repo}: wrong passphrase" in repo_check["detail"]


def test_unreachable_repository_fails_and_offline_skips_it(tmp_path, cli):
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(4096))
    url = f"s3://bucket/repo?endpoint=http://127.0.0.1:{_closed_port()}&region=us-east-1"
    cfg = _config(tmp_path, url, {"disk": disk})
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AGENT_REPO": ""}
    res = cli("--config", str(cfg), "config", "check", check=False, env=aws, timeout=180)
    assert res.code == 1 and "ok    source disk:" in res.out, res.out + res.err
    assert "FAIL  repository: " in res.out and "s3://bucket/repo" in res.out, res.out
    offline = cli("--config", str(cfg), "config", "check", "--offline", env=aws)
    assert "ok    source disk:" in offline.out and "repository:" not in offline.out, offline.out
