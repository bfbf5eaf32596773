"""docs/agent.1 is what agent/cli/manpage.py generates, and man/groff render it without a warning."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from agent.cli.manpage import generate
from tests.docs.examples import DOCS

COMMITTED = DOCS / "agent.1"


def test_committed_man_page_is_current():
    actual = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert actual == generate(), "docs/agent.1 is out of date with the CLI: run `make cli-reference` and commit it"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff-base is not installed (make system-deps)")
def test_groff_renders_it_without_warnings():
    proc = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(COMMITTED)], capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C.UTF-8"}, check=True)
    assert proc.stderr == ""


@pytest.mark.skipif(shutil.which("man") is None, reason="man-db is not installed")
def test_man_shows_every_command_and_option():
    env = {k: v for k, v in os.environ.items() if k != "MAN_KEEP_FORMATTING"}
    proc = subprocess.run(["man", "-l", str(COMMITTED)], capture_output=True, text=True, check=True,
                          env={**env, "MANWIDTH": "200", "LC_ALL": "C.UTF-8"})
    text = re.sub(".\x08", "", proc.stdout)  # overstrike bold, should a pager setting keep it
    assert proc.stderr == "" and text.startswith("AGENT(1)")
    for heading in ("NAME", "SYNOPSIS", "GLOBAL OPTIONS", "BACKUP", "RESTORE", "KEY ADD", "EXIT STATUS"):
        assert f"\n{heading}\n" in text, heading
    assert "--keep-within" in text and "--passphrase-file" in text and "--version" in text
