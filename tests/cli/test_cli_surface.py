"""The command line as a new user meets it: --version, global options anywhere, -q."""

from __future__ import annotations

import json
import os
import platform

import pytest

import agent
from agent.repo.format import FORMAT_VERSION


@pytest.mark.parametrize("args", [("--version",), ("--version", "--json"), ("--json", "--version")])
def test_version_needs_no_repository_or_config(cli, tmp_path, args):
    res = cli(*args, env={"AGENT_REPO": "", "AGENT_CONFIG": str(tmp_path / "missing.toml")})
    assert res.err == ""
    if "--json" in args:
        assert json.loads(res.out) == {"event": "version", "version": agent.__version__,
                                       "format_version": FORMAT_VERSION, "python": platform.python_version()}
    else:
        assert res.out == f"agent {agent.__version__} (repository format {FORMAT_VERSION}, " \
                          f"Python {platform.python_version()})\n"


def test_the_version_is_the_distribution_version():
    """pyproject.toml reads agent.__version__, so the installed metadata and --version agree."""
    from importlib.metadata import packages_distributions, version

    dist = packages_distributions()["agent"][0]
    assert version(dist) == agent.__version__


@pytest.fixture
def backed_up(cli, tmp_path):
    """A repository with one snapshot of a small image, and the environment without AGENT_REPO."""
    cli("init")
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(1 << 20))
    cli("backup", str(img))
    return img


# Each global option written after the command, with an observable effect.
def test_repo_and_passphrase_options_after_the_command(cli, backed_up, tmp_path):
    no_env = {"AGENT_REPO": "", "AGENT_PASSPHRASE_FILE": ""}
    res = cli("snapshots", "--repo", str(cli.repo), "--passphrase-file", str(cli.passfile), "--json", env=no_env)
    assert len(json.loads(res.out.splitlines()[-1])["snapshots"]) == 1
    res = cli("snapshots", f"--repo={cli.repo}", "--passphrase-command", f"cat {cli.passfile}", env=no_env)
    assert backed_up.name in res.out
    res = cli("backup", str(backed_up), "-r", str(cli.repo), "--passphrase-file", str(cli.passfile),
              env=no_env)  # a command with a SOURCE argument
    assert "saved" in res.out
    res = cli("key", "list", "-r", str(cli.repo), "--passphrase-file", str(cli.passfile),
              env=no_env)  # a sub-command of a group
    assert res.code == 0


def test_output_options_after_the_command(cli, backed_up, tmp_path):
    res = cli("check", "--json")  # check's own --json
    assert json.loads(res.out.splitlines()[-1])
    res = cli("stats", "--json")  # stats has no --json of its own: the global one
    assert json.loads(res.out.splitlines()[-1])
    assert cli("backup", str(backed_up), "--quiet").out.count("\n") == 1
    assert cli("backup", str(backed_up), "-q").out.count("\n") == 1
    res = cli("snapshots", "--debug", env={"AGENT_REPO": str(tmp_path / "nothing-here")}, check=False)
    assert res.code == 10 and "Traceback" in res.err and "error: no repository at" in res.err
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'repository = "{cli.repo}"\n')
    cfg.chmod(0o600)
    assert backed_up.name in cli("snapshots", "--config", str(cfg), env={"AGENT_REPO": ""}).out
    assert backed_up.name in cli("snapshots", "-c", str(cfg), env={"AGENT_REPO": ""}).out


@pytest.mark.parametrize("option", [("--repo", "r"), ("-r", "r"), ("--repo=r",), ("--passphrase-file", "f"),
                                    ("--passphrase-command", "c"), ("--quiet",), ("-q",), ("--debug",),
                                    ("--syslog",), ("--config", "f"), ("-c", "f")])
def test_every_global_option_after_a_command_is_moved_in_front(option):
    """The real command tree: `agent backup x OPTION` parses as `agent OPTION backup x`."""
    import typer

    from agent.cli.group import hoist_globals
    from agent.cli.main import app

    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="agent")
    assert hoist_globals(root, ctx, ["backup", "x", *option, "--tag", "t"]) == [*option, "backup", "x", "--tag", "t"]
    assert hoist_globals(root, ctx, ["key", "list", *option]) == [*option, "key", "list"]
    # after `--`, or as the value of the command's own option, it is the command's
    assert hoist_globals(root, ctx, ["backup", "x", "--", *option]) == ["backup", "x", "--", *option]
    assert hoist_globals(root, ctx, ["backup", "--tag", option[0], "x"]) == ["backup", "--tag", option[0], "x"]


def test_a_command_keeps_its_own_option_of_a_global_name():
    import typer

    from agent.cli.group import hoist_globals
    from agent.cli.main import app

    root = typer.main.get_command(app)
    ctx = typer.Context(root, info_name="agent")
    assert hoist_globals(root, ctx, ["check", "--json"]) == ["check", "--json"]
    assert hoist_globals(root, ctx, ["backup", "x", "--json", "-q"]) == ["-q", "backup", "x", "--json"]
    assert hoist_globals(root, ctx, ["mount", "x", "--json"]) == ["--json", "mount", "x"]  # mount has none


def test_options_after_double_dash_and_unknown_commands_are_left_alone(cli, backed_up):
    res = cli("snapshots", "--", "--repo", "elsewhere", check=False)
    assert res.code == 2 and "unexpected extra argument" in res.err
    res = cli("nosuchcommand", "--repo", "x", check=False)
    assert res.code == 2 and "No such command" in res.err


def test_quiet_prints_only_the_result_line(cli, backed_up, tmp_path):
    """-q: one line on stdout per command, nothing on stderr when all is well."""
    target = tmp_path / "copy-repo"
    copy_pass = tmp_path / "copy-pass"
    copy_pass.write_text("another passphrase\n")
    copy_pass.chmod(0o600)
    cli("init", "--repo", str(target), "--passphrase-file", str(copy_pass), "--from-repo", str(cli.repo),
        "--from-passphrase-file", str(cli.passfile))  # same chunking: no warning from copy
    runs = [
        ("backup", str(backed_up)),
        ("restore", "latest", "--to", str(tmp_path / "restored.img")),
        ("check",),
        ("verify", "latest"),
        ("copy", "--to-repo", str(target), "--to-passphrase-file", str(copy_pass)),
        ("forget", "--keep-last", "1"),
        ("prune",),
    ]
    for args in runs:
        res = cli("-q", *args)
        assert res.err == "" and len(res.out.splitlines()) == 1, (args, res)
    assert (tmp_path / "restored.img").read_bytes() == backed_up.read_bytes()


def test_quiet_run_prints_the_summary_only(cli, backed_up, tmp_path):
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'repository = "{cli.repo}"\npassphrase_file = "{cli.passfile}"\n\n'
                   f'[[sources]]\nname = "disk"\npath = "{backed_up}"\n')
    cfg.chmod(0o600)
    env = {"AGENT_STATE_DIR": str(tmp_path / "state")}
    res = cli("--config", str(cfg), "run", "-q", env=env)
    assert res.err == "" and len(res.out.splitlines()) == 1, res
    assert len(cli("--config", str(cfg), "run", env=env).out.splitlines()) > 1
