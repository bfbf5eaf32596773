"""Shell completion (typer's): the bash script it prints and installs really completes commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent  # the `agent` console script of the environment under test


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "_AGENT"))}
    return {**env, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "SHELL": "/bin/bash"}


def _complete_in_bash(script: str, words: list[str], env: dict) -> list[str]:
    """Source the completion script in a real bash, call its function as bash's `complete` would."""
    cword = len(words) - 1
    program = (f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)})\nCOMP_CWORD={cword}\n"
               "_agent_completion agent\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    proc = subprocess.run(["bash", "--norc", "--noprofile", "-c", program], capture_output=True, text=True,
                          env=env, check=True, timeout=60)
    return proc.stdout.split()


def test_show_completion_script_completes_commands_and_subcommands(tmp_path):
    env = _env(tmp_path)
    script = subprocess.run([str(BIN / "agent"), "--show-completion", "bash"], capture_output=True, text=True,
                            env=env, check=True).stdout
    assert "complete -o default -F _agent_completion agent" in script
    assert _complete_in_bash(script, ["agent", "res"], env) == ["restore"]
    assert set(_complete_in_bash(script, ["agent", "re"], env)) == {"restore", "repair", "retain"}
    assert _complete_in_bash(script, ["agent", "key", "pa"], env) == ["passwd"]
    assert "--keep-within" in _complete_in_bash(script, ["agent", "forget", "--keep-wi"], env)


def test_install_completion_writes_a_script_bash_sources(tmp_path):
    env = _env(tmp_path)
    proc = subprocess.run([str(BIN / "agent"), "--install-completion", "bash"], capture_output=True, text=True,
                          env=env, check=True)
    assert "completion installed" in proc.stdout.lower() or "completion installed" in proc.stderr.lower()
    bashrc = (tmp_path / ".bashrc").read_text()
    installed = tmp_path / ".bash_completions" / "agent.sh"
    assert str(installed) in bashrc or ".bash_completions/agent.sh" in bashrc
    assert _complete_in_bash(f"source {installed}", ["agent", "snap"], env) == ["snapshots"]
