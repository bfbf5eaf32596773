"""A Debian minbase chroot without Python, made by debootstrap and cached between runs.

The rescue systems the single-file executable is for have no Python: a minbase chroot is the smallest
real Debian userland, so anything the executable forgot to bundle fails there. The mirror and suite come
from this machine's apt sources at run time (the machine may only reach its own mirror).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

SOURCES_DIR = Path("/etc/apt/sources.list.d")
SOURCES_LIST = Path("/etc/apt/sources.list")


def debian_mirror() -> tuple[str, str]:
    """(URI, suite) of the first Debian main-suite entry in the apt sources (deb822 or one-line)."""
    for path in sorted(SOURCES_DIR.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.+)$", stanza, re.M))
            if "deb" not in fields.get("Types", "").split() or "security" in fields.get("URIs", ""):
                continue
            suites = [s for s in fields.get("Suites", "").split() if "-" not in s]
            if fields.get("URIs") and suites:
                return fields["URIs"].split()[0], suites[0]
    lists = [SOURCES_LIST, *sorted(SOURCES_DIR.glob("*.list"))]
    for path in (p for p in lists if p.exists()):
        for line in path.read_text().splitlines():
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and "-" not in m.group(2) and "security" not in m.group(1):
                return m.group(1), m.group(2)
    raise RuntimeError("no Debian entry in the apt sources to run debootstrap from")


def minbase_chroot(cache: Path) -> Path:
    """The cached chroot, made on first use (about two minutes); a half-made one is never reused."""
    uri, suite = debian_mirror()
    root = cache / f"debootstrap-{suite}-minbase"
    if (root / ".complete").exists():
        return root
    debootstrap = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not os.path.exists(debootstrap):
        raise RuntimeError("debootstrap is missing: apt-get install debootstrap (make dist-deps)")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([debootstrap, "--variant=minbase", suite, str(partial), uri], check=True,
                   capture_output=True, timeout=1800)
    shutil.rmtree(root, ignore_errors=True)
    partial.rename(root)
    (root / ".complete").touch()
    return root


def run_in(root: Path, *argv: str, env: dict[str, str] | None = None,
           timeout: float = 600) -> subprocess.CompletedProcess:
    """argv inside the chroot with only `env` (plus PATH and HOME): nothing leaks in from the host."""
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    base = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/root", "LC_ALL": "C.UTF-8"}
    return subprocess.run([chroot, str(root), *argv], env={**base, **(env or {})}, capture_output=True,
                          text=True, timeout=timeout)
