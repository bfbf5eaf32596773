"""Run the `console` examples of the documentation, so every command a page shows really works.

The convention (also explained to writers in docs/contributing-docs.md):

- Only fenced blocks whose language is `console` run; `sh`, `text` etc. are for examples that cannot
  run here (real disks, cloud URLs, prompts).
- In a `console` block, a line starting with `$ ` is a command. A command line ending with `\\` continues
  on the next line. Every other non-blank line is expected output of the command above it.
- The command must exit 0, unless its last line ends with a comment `# exit N`: then it must exit N.
- Expected output lines must appear in the command's output (stdout and stderr together), in the order
  shown; output lines not shown are allowed. Runs of whitespace count as one space, and `...` inside a
  line matches anything, the spaces around it included (ids, times, sizes). A line that is only `...`
  just marks an omission.
- All commands of a page run in order in one bash shell (`set -o pipefail`, stdin from /dev/null), so
  `export` and `cd` carry over; the first command that fails stops the page.
- The shell starts in a fresh temporary directory that is also $HOME and holds only `disk.img`, a 64 MiB
  GPT disk image (EFI system partition + ext4, tests/diskimage.py), and `passphrase`; the environment has
  AGENT_REPO=$HOME/repo (not created yet), AGENT_PASSPHRASE_FILE=$HOME/passphrase, AGENT_CACHE_DIR,
  AGENT_KDF=1,8,1 (a cheap key derivation), TZ=UTC and the `agent` under test first on PATH (see
  `agent_on_path`: by default a client of a fork server, to skip Python's imports per command).
- `<!-- docs-test setup: COMMANDS -->` on a line of its own, outside code blocks, anywhere on a page runs
  COMMANDS (hidden from readers) before its first block, e.g. `agent init && agent backup disk.img` for
  a page about restoring. They must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
PASSPHRASE = "correct horse battery staple"

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`]*)$")
_EXIT = re.compile(r"#\s*exit\s+(\d+)\s*$")
_SETUP = re.compile(r"^[ \t]*<!--\s*docs-test\s+setup:(.*?)-->[ \t]*$", re.S | re.M)


class ExampleError(ValueError):
    """A `console` block that does not follow the convention."""


@dataclass
class Command:
    text: str  # as on the page, continuation lines included
    line: int  # 1-based line of the `$ ` in the page
    exit_code: int = 0
    expected: list[str] = field(default_factory=list)


@dataclass
class Page:
    path: Path
    setup: list[str]
    commands: list[Command]

    @property
    def name(self) -> str:
        return self.path.name


def parse_page(path: Path, text: str | None = None) -> Page:
    """The hidden setup and the `console` commands of one Markdown page, in order."""
    text = path.read_text(encoding="utf-8") if text is None else text
    commands: list[Command] = []
    outside: list[str] = []  # setup comments count only outside code blocks
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            outside.append(lines[i])
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip()
        start = i
        i += 1
        body: list[tuple[int, str]] = []
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            raw = lines[i]
            body.append((i + 1, raw[len(indent):] if raw.startswith(indent) else raw.lstrip()))
            i += 1
        i += 1
        if info.split()[:1] == ["console"]:
            commands += _parse_block(path, start + 1, body)
    setup = [s.strip() for s in _SETUP.findall("\n".join(outside)) if s.strip()]
    return Page(path, setup, commands)


def _parse_block(path: Path, fence_line: int, body: list[tuple[int, str]]) -> list[Command]:
    out: list[Command] = []
    continuing = False
    for lineno, line in body:
        if continuing:
            out[-1].text += "\n" + line
        elif line.startswith("$ "):
            out.append(Command(line[2:], lineno))
        elif not line.strip() or line.strip() == "...":
            continue
        elif not out:
            raise ExampleError(f"{path.name}:{lineno}: output before the first `$ ` command in the console block "
                               f"at line {fence_line}")
        else:
            out[-1].expected.append(line)
            continue
        continuing = line.endswith("\\")
    if not out:
        raise ExampleError(f"{path.name}:{fence_line}: console block without a `$ ` command; use ```text for "
                           "output-only blocks")
    for cmd in out:
        m = _EXIT.search(cmd.text.splitlines()[-1])
        if m:
            cmd.exit_code = int(m[1])
    return out


def _normalize(line: str) -> str:
    return " ".join(line.split())


def _pattern(expected: str) -> re.Pattern:
    parts = [re.escape(p) for p in re.split(r"\s*\.\.\.\s*", _normalize(expected))]
    return re.compile(".*?".join(parts))


def missing_output(expected: list[str], output: str) -> str | None:
    """The first expected line not found (in order) in output, or None when all are there."""
    lines = [_normalize(line) for line in output.splitlines()]
    pos = 0
    for want in expected:
        pat = _pattern(want)
        while pos < len(lines) and not pat.search(lines[pos]):
            pos += 1
        if pos == len(lines):
            return want
        pos += 1
    return None


@dataclass
class AgentOnPath:
    """Where the pages find `agent`: a directory for PATH and variables its `agent` needs."""

    bin_dir: Path
    env: dict[str, str]


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_", "DOCS_AGENT_"))}


@contextmanager
def agent_on_path(scratch: Path) -> Iterator[AgentOnPath]:
    """The `agent` the examples run: the client of a fork server (tests/docs/agent_server.py) that runs
    each command in a fresh fork of an already imported CLI, or, with DOCS_TEST_REAL_AGENT=1, the venv's
    console script (about half a second of imports per command)."""
    scratch.mkdir(parents=True, exist_ok=True)
    if os.environ.get("DOCS_TEST_REAL_AGENT") == "1":
        here = Path(sys.executable).parent
        if not (here / "agent").exists():
            here = scratch / "bin"
            here.mkdir(exist_ok=True)
            (here / "agent").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m agent \"$@\"\n")
            (here / "agent").chmod(0o755)
        yield AgentOnPath(here, {})
        return
    from tests.docs.agent_server import CLIENT

    bin_dir = scratch / "bin"
    bin_dir.mkdir(exist_ok=True)
    (scratch / "agent_client.py").write_text(CLIENT)
    (bin_dir / "agent").write_text(  # python -IS: isolated, no site-packages; starts in milliseconds
        f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -IS {shlex.quote(str(scratch / 'agent_client.py'))} \"$@\"\n")
    (bin_dir / "agent").chmod(0o755)
    sock = str(scratch / "agent.sock")
    log = open(scratch / "agent-server.log", "w+")
    # Run as a script, not with -m: click names the program after __main__ (`agent`, not `python -m ...`).
    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("agent_server.py")), sock],
                              cwd=REPO_ROOT, env={**_base_env(), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)},
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                              text=True)
    try:
        if server.stdout.readline().strip() != "ready":
            server.wait(timeout=30)
            log.seek(0)
            raise RuntimeError(f"the agent fork server did not start:\n{log.read()}")
        yield AgentOnPath(bin_dir, {"DOCS_AGENT_SERVER": sock})
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and any command still running
        server.wait(timeout=30)
        server.stdout.close()
        log.close()


def page_env(home: Path, agent: AgentOnPath) -> dict[str, str]:
    env = _base_env()
    env.update(agent.env)
    env.update(
        HOME=str(home),
        PATH=os.pathsep.join([str(agent.bin_dir), env.get("PATH", ""), "/usr/sbin", "/sbin"]),
        AGENT_REPO=str(home / "repo"),
        AGENT_PASSPHRASE_FILE=str(home / "passphrase"),
        AGENT_CACHE_DIR=str(home / ".cache" / "agent"),
        AGENT_KDF="1,8,1",
        TZ="UTC",
        LC_ALL="C.UTF-8",
        COLUMNS="100",
        PYTHONUNBUFFERED="1",  # stdout and stderr interleave as on a terminal
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


@dataclass
class StepResult:
    label: str
    command: str
    expected_code: int
    code: int | None  # None: not reached
    output: str


def run_page(page: Page, workdir: Path, disk_image: Path, agent: AgentOnPath,
             timeout: float = 120) -> list[StepResult]:
    """Run the page's setup and commands in one shell in a fresh HOME; one result per step."""
    home, outdir = workdir / "home", workdir / "out"
    home.mkdir(parents=True)
    outdir.mkdir()
    (home / "passphrase").write_text(PASSPHRASE + "\n")
    (home / "passphrase").chmod(0o600)
    subprocess.run(["cp", "--sparse=always", str(disk_image), str(home / "disk.img")], check=True)

    steps = [(f"setup {n}", s, 0) for n, s in enumerate(page.setup, 1)]
    steps += [(f"{page.name}:{c.line}", c.text, c.exit_code) for c in page.commands]
    script = ["set -o pipefail", f"cd {shlex.quote(str(home))}"]
    for n, (_, text, code) in enumerate(steps):
        out = shlex.quote(str(outdir / f"{n}.out"))
        script += [
            "{ " + text,
            f"}} >{out} 2>&1 </dev/null",
            f"rc=$?; echo $rc >{shlex.quote(str(outdir / f'{n}.rc'))}; [ $rc -eq {code} ] || exit 0",
        ]
    (workdir / "page.sh").write_text("\n".join(script) + "\n")
    shell = subprocess.run(["bash", str(workdir / "page.sh")], env=page_env(home, agent), cwd=home,
                           timeout=timeout, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    results = []
    for n, (label, text, code) in enumerate(steps):
        rc_file, out_file = outdir / f"{n}.rc", outdir / f"{n}.out"
        rc = int(rc_file.read_text()) if rc_file.exists() else None
        output = out_file.read_text(errors="replace") if out_file.exists() else shell.stderr
        results.append(StepResult(label, text, code, rc, output))
    return results


def first_failure(page: Page, results: list[StepResult]) -> str | None:
    """What went wrong first (wrong exit code, missing output, a step never reached), or None."""
    expected = {f"{page.name}:{c.line}": c.expected for c in page.commands}
    for r in results:
        if r.code is None:
            return f"{r.label}: not run: an earlier step or a shell syntax error stopped the page\n{r.output}"
        if r.code != r.expected_code:
            return f"{r.label}: `{r.command}` exited {r.code}, the page expects {r.expected_code}; output:\n{r.output}"
        missing = missing_output(expected.get(r.label, []), r.output)
        if missing is not None:
            return f"{r.label}: `{r.command}` did not print (in order) the line\n    {missing}\noutput:\n{r.output}"
    return None


def pages_with_examples() -> list[Path]:
    """Pages that mention a console block or a setup comment; parsing them is each page's own test."""
    marker = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*console\b|docs-test\s+setup:", re.M)
    return sorted(p for p in DOCS.glob("*.md") if marker.search(p.read_text(encoding="utf-8")))

