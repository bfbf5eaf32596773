"""How to invoke each tool with equivalent settings: one encrypted local repository per tool and
round, zstd level 3 where the tool lets us choose, each tool's own cache under the round's directory
(so no round profits from an earlier one), and output captured as JSON where the tool offers it.

A tool object answers: environment, init, backup, restore commands, where the restored image ends
up, and what the backup printed (snapshot id, tool-side stats).
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from bench.fetch import DEFAULT_CACHE


def _json_lines(path: str) -> list[dict]:
    out = []
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _first_line(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unavailable"


class Tool:
    name = ""

    def __init__(self, root: Path, passfile: Path) -> None:
        self.root, self.passfile = root, passfile
        self.repo = root / f"{self.name}-repo"

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def init_cmd(self) -> list[str]:
        raise NotImplementedError

    def backup_cmd(self, src: Path, label: str) -> list[str]:
        raise NotImplementedError

    def backup_info(self, stdout: str) -> dict:
        """What the tool reported about a backup; must hold 'ref', what restore_cmd needs."""
        raise NotImplementedError

    def restore(self, ref: str, src: Path, target_dir: Path) -> tuple[list[str], Path, Path]:
        """(command, cwd, path of the restored image)."""
        raise NotImplementedError

    @classmethod
    def version(cls) -> str:
        raise NotImplementedError


class Agent(Tool):
    """Run as `python -m agent` from a frozen copy of the source (see freeze_agent), so every round
    measures the same code even while the working tree is being edited."""

    name = "agent"
    src: Path | None = None  # set by freeze_agent; None runs the installed (editable) package

    @property
    def exe(self) -> list[str]:
        return [sys.executable, "-m", "agent"]

    def env(self) -> dict[str, str]:
        env = dict(os.environ, AGENT_REPO=str(self.repo), AGENT_PASSPHRASE_FILE=str(self.passfile),
                   AGENT_CACHE_DIR=str(self.root / "agent-cache"))
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        env.pop("AGENT_KDF", None)  # the default Argon2id parameters, as a user gets them
        env.pop("AGENT_PASSPHRASE", None)
        return env

    def init_cmd(self) -> list[str]:
        return [*self.exe, "init"]

    def backup_cmd(self, src: Path, label: str) -> list[str]:
        return [*self.exe, "backup", str(src), "--json", "--tag", label]

    def backup_info(self, stdout: str) -> dict:
        lines = _json_lines(stdout)
        info = lines[-1] if lines else {}
        return {"ref": info.get("snapshot_id", ""), "summary": info}

    def restore(self, ref: str, src: Path, target_dir: Path) -> tuple[list[str], Path, Path]:
        out = target_dir / "restored.img"
        return [*self.exe, "restore", ref, "--to", str(out), "--json"], target_dir, out

    @classmethod
    def version(cls) -> str:
        env = dict(os.environ, PYTHONPATH=str(cls.src)) if cls.src else None
        try:
            r = subprocess.run([sys.executable, "-c", "import agent; print('agent', agent.__version__)"],
                               check=False, capture_output=True, text=True, timeout=60, env=env)
            return r.stdout.strip() or "unavailable"
        except (OSError, subprocess.SubprocessError):
            return "unavailable"


class Restic(Tool):
    """restic 0.14, Debian bookworm's package (`restic` on the PATH); it has no sparse restore."""

    name = "restic-0.14"
    exe = "restic"

    def env(self) -> dict[str, str]:
        env = dict(os.environ, RESTIC_REPOSITORY=str(self.repo), RESTIC_PASSWORD_FILE=str(self.passfile),
                   RESTIC_CACHE_DIR=str(self.root / f"{self.name}-cache"))
        env.pop("RESTIC_PASSWORD", None)
        return env

    def init_cmd(self) -> list[str]:
        return [self.exe, "init"]

    def backup_cmd(self, src: Path, label: str) -> list[str]:
        # a file path, not --stdin: restic then finds its parent snapshot by path, as in nightly use
        return [self.exe, "backup", "--json", "--tag", label, str(src)]

    def backup_info(self, stdout: str) -> dict:
        summary = next((d for d in reversed(_json_lines(stdout)) if d.get("message_type") == "summary"), {})
        return {"ref": summary.get("snapshot_id", ""), "summary": summary}

    def restore_args(self) -> list[str]:
        return []

    def restore(self, ref: str, src: Path, target_dir: Path) -> tuple[list[str], Path, Path]:
        out = target_dir / str(src.resolve()).lstrip("/")  # restic recreates the absolute path
        return [self.exe, "restore", ref, "--target", str(target_dir), *self.restore_args()], target_dir, out

    @classmethod
    def version(cls) -> str:
        return _first_line([cls.exe, "version"])


class Restic018(Restic):
    """restic 0.18, Debian trixie's package unpacked by bench.fetch (BENCH_TOOLS/restic-0.18); it
    restores holes as holes with --sparse."""

    name = "restic-0.18"
    exe = str(DEFAULT_CACHE / "restic-0.18/usr/bin/restic")  # run.Bench points it at its --tools-cache

    def restore_args(self) -> list[str]:
        return ["--sparse"]


class Borg(Tool):
    name = "borg"
    exe = "borg"  # 1.2, Debian bookworm's: trixie's 1.4 needs Python 3.13 and glibc 2.38 (bench.fetch)

    def env(self) -> dict[str, str]:
        return dict(os.environ, BORG_PASSPHRASE=self.passfile.read_text().strip(),
                    BORG_BASE_DIR=str(self.root / "borg-home"))

    def init_cmd(self) -> list[str]:
        return [self.exe, "init", "--encryption=repokey-blake2", str(self.repo)]

    def backup_cmd(self, src: Path, label: str) -> list[str]:
        # defaults otherwise: the files cache stays on (it cannot skip: the image changes every day)
        return [self.exe, "create", "--json", "--compression", "zstd,3", f"{self.repo}::{label}", str(src)]

    def backup_info(self, stdout: str) -> dict:
        try:
            info = json.loads(Path(stdout).read_text())
        except (OSError, ValueError):
            info = {}
        name = info.get("archive", {}).get("name", "")
        return {"ref": name, "summary": info.get("archive", {}).get("stats", {})}

    def restore(self, ref: str, src: Path, target_dir: Path) -> tuple[list[str], Path, Path]:
        out = target_dir / str(src.resolve()).lstrip("/")  # borg extracts relative to the cwd
        return [self.exe, "extract", "--sparse", f"{self.repo}::{ref}"], target_dir, out

    @classmethod
    def version(cls) -> str:
        return _first_line([cls.exe, "--version"])


def freeze_agent(repo_root: Path, dest: Path) -> str:
    """Copy the agent's packages to DEST and use that copy from now on; returns a digest of the
    copied sources, recorded with the results (the commit alone misses uncommitted edits)."""
    h = hashlib.sha256()
    shutil.rmtree(dest, ignore_errors=True)
    for pkg in ("agent", "backends", "crypto"):
        shutil.copytree(repo_root / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in sorted(dest.rglob("*.py")):
        h.update(str(f.relative_to(dest)).encode() + b"\0" + f.read_bytes())
    # byte-compiled, as `pip install` leaves a package (PYTHONDONTWRITEBYTECODE would otherwise make
    # every command compile ~150 modules again)
    compileall.compile_dir(str(dest), quiet=1)
    Agent.src = dest
    return h.hexdigest()[:16]


TOOLS: dict[str, type[Tool]] = {"agent": Agent, "restic-0.18": Restic018, "restic-0.14": Restic, "borg": Borg}
