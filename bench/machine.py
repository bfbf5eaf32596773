"""What the numbers were measured on: CPU, cores, RAM, kernel, disk, tool versions.

Recorded with every result file because a benchmark without its machine is not comparable.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

from bench.tools import TOOLS


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _filesystem(path: Path) -> str:
    try:
        r = subprocess.run(["df", "--output=source,fstype", str(path)], check=False, capture_output=True, text=True,
                           timeout=30)
        return " ".join(r.stdout.splitlines()[-1].split())
    except (OSError, IndexError, subprocess.SubprocessError):
        return "unknown"


def _git_commit(repo: Path) -> str:
    try:  # read-only: never refreshes the index
        r = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], check=False,
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def describe(work: Path, repo_root: Path, tools: list[str]) -> dict:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_bytes": _mem_total(),
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", platform.platform())
        if hasattr(platform, "freedesktop_os_release") else platform.platform(),
        "python": platform.python_version(),
        "work_filesystem": _filesystem(work),
        "work_free_bytes": shutil.disk_usage(work).free,
        "agent_commit": _git_commit(repo_root),
        "versions": {t: TOOLS[t].version() for t in tools},
        "root": os.geteuid() == 0,
    }
