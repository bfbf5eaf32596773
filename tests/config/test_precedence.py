"""Which repository a command uses when flags, AGENT_* variables and a config file disagree, and
that every error about a repository names it (credentials redacted)."""

from __future__ import annotations

from pathlib import Path


def _repo_with_own_passphrase(cli, tmp_path: Path, name: str) -> tuple[Path, Path]:
    repo, passfile = tmp_path / name, tmp_path / f"{name}.pass"
    passfile.write_text(f"passphrase of {name}\n")
    passfile.chmod(0o600)
    cli("--repo", str(repo), "--passphrase-file", str(passfile), "init")
    return repo, passfile


def test_a_named_config_file_wins_over_agent_repo_and_says_so(tmp_path, cli):
    """issue 24: `AGENT_REPO=/x agent --config f.toml ...` paired /x with f.toml's passphrase and
    failed with "wrong passphrase" without naming either repository."""
    mine, my_pass = _repo_with_own_passphrase(cli, tmp_path, "mine")
    other, _ = _repo_with_own_passphrase(cli, tmp_path, "other")
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'repository = "{mine}"\npassphrase_file = "{my_pass}"\n')
    res = cli("--config", str(cfg), "snapshots", check=False, env={"AGENT_REPO": str(other)})
    assert res.code == 0, res.err
    assert f"using the repository {mine}, not {other}" in res.err and "--config wins" in res.err


def test_wrong_passphrase_names_the_repository(tmp_path, cli):
    mine, _ = _repo_with_own_passphrase(cli, tmp_path, "mine")
    res = cli("--repo", str(mine), "snapshots", check=False)  # the fixture's passphrase, not mine's
    assert res.code == 11 and f"repository {mine}: wrong passphrase" in res.err, res.err


def test_storage_errors_name_the_repository_without_its_secrets(tmp_path, cli):
    url = "s3://bucket/prefix?endpoint=http://user:pw-7311@127.0.0.1:9"
    res = cli("--repo", url, "snapshots", check=False, timeout=120,
              env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert res.code == 17 and "error: cannot read the repository at s3://bucket/prefix/" in res.err, res.err
    assert "pw-7311" not in res.err + res.out and "Traceback" not in res.err
