"""docs/cli-reference.md is exactly what agent/cli/reference.py generates from the typer app.

The reference is generated so it cannot drift from the code: a new command, option, default or help
text must show up in the committed page, and the generator must cover the whole command tree.
"""

from __future__ import annotations

import os
import subprocess
import sys

import typer

from agent.cli.main import app
from agent.cli.reference import generate
from tests.docs.examples import DOCS, REPO_ROOT

COMMITTED = DOCS / "cli-reference.md"


def test_committed_reference_is_current():
    expected = generate()
    actual = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert actual == expected, (
        "docs/cli-reference.md is out of date with the CLI: run `make cli-reference` and commit the result")


def _tree(command, ctx, path):
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if not getattr(sub, "hidden", False):
                yield from _tree(sub, typer.Context(sub, info_name=name, parent=ctx), [*path, name])


def test_every_command_option_and_argument_is_documented():
    text = generate()
    root = typer.main.get_command(app)
    seen = 0
    for path, command, _ in _tree(root, typer.Context(root, info_name="agent"), ["agent"]):
        section = text.split(f"\n## {' '.join(path)}\n", 1)
        assert len(section) == 2, f"no section for `{' '.join(path)}`"
        body = section[1].split("\n## ", 1)[0]
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            names = param.opts if param.param_type_name == "option" else [param.name]
            for name in names:
                assert f"`{name}`" in body, f"`{' '.join(path)}` lacks {name} in the reference"
            if param.help:
                assert " ".join(param.help.split()) in body.replace("\\|", "|")
        seen += 1
    assert seen >= 15  # the root, every command, the key group and its sub-commands


def test_output_does_not_depend_on_the_terminal():
    env = {**os.environ, "COLUMNS": "33", "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "agent.cli.reference"], capture_output=True, text=True, env=env,
                          cwd=REPO_ROOT, check=True)
    assert proc.stdout == generate()
    assert "\x1b[" not in proc.stdout and "╭" not in proc.stdout  # no ANSI colours, no rich boxes


def test_defaults_required_markers_and_subcommands_are_rendered():
    text = generate()
    restore = text.split("\n## agent restore\n", 1)[1].split("\n## ", 1)[0]
    assert "| `--to` | `str` | required |" in restore
    assert "agent restore [OPTIONS]" in restore
    backup = text.split("\n## agent backup\n", 1)[1].split("\n## ", 1)[0]
    assert "| `--lock-wait` | `int` | `1800` |" in backup
    key = text.split("\n## agent key\n", 1)[1].split("\n## ", 1)[0]
    assert "[agent key add](#agent-key-add)" in key
