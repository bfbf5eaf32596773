"""Fetch a newer tool release from the next Debian release: `python -m bench.fetch [--cache DIR]`.

restic 0.18 (the project's anchor) is Debian trixie's package; its static Go binary runs on this
bookworm machine. It is fetched at bench time with `apt-get download` under a private apt
configuration and unpacked with `dpkg-deb -x`, never installed. The private sources are this
machine's own apt sources (sources.list and sources.list.d/*.list|*.sources, read at runtime) with
the machine's suite (bookworm, bookworm-updates, ...) renamed to trixie: no archive address is
written anywhere but into that private file. The private lists, cache and sources live under the
cache directory, so the system's apt state (its lists, cache and installed packages) is untouched.

borg 1.4 is not fetched this way: trixie's borgbackup is built for Python 3.13, whose interpreter
needs glibc 2.38 (bookworm has 2.36), so it cannot run here without a newer C library.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

RELEASE = "trixie"
RESTIC_VERSION = "0.18"
DEFAULT_CACHE = Path(os.environ.get("BENCH_TOOLS", "/tmp/bench-tools"))
# Update hooks of the system's apt.conf.d (appstream, packagekit) would refresh system catalogues
# from the private lists; a config file given with -c is read after them and can clear them.
_CLEAR_HOOKS = "".join(f"#clear {k};\n" for k in
                       ("APT::Update::Pre-Invoke", "APT::Update::Post-Invoke", "APT::Update::Post-Invoke-Success",
                        "DPkg::Pre-Invoke", "DPkg::Post-Invoke"))


class FetchError(RuntimeError):
    """The tool could not be obtained; the message says which step failed."""


def _suite(suite: str, old: str, new: str) -> str | None:
    """NEW in place of OLD for the release's own suites (bookworm, bookworm-security); None for others."""
    if suite == old or suite.startswith(old + "-"):
        return new + suite[len(old):]
    return None


def retarget_one_line(text: str, old: str, new: str) -> str:
    """One-line-style sources (sources.list): the binary `deb` lines of release OLD, renamed to NEW.

    Source lines, other suites (a vendor's `nodistro`), comments and blank lines are dropped.
    """
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"(\S+)\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)(\s+.*)?", line)
        if not m or m.group(1) != "deb":
            continue
        suite = _suite(m.group(4), old, new)
        if suite is not None:
            out.append(f"deb {m.group(2) or ''}{m.group(3)} {suite}{m.group(5) or ''}")
    return "".join(line + "\n" for line in out)


def _stanzas(text: str) -> list[list[tuple[str, str]]]:
    """deb822 stanzas as (field, value) pairs; continuation lines are joined to their field."""
    stanzas: list[list[tuple[str, str]]] = []
    cur: list[tuple[str, str]] = []
    for raw in text.splitlines():
        if raw.lstrip().startswith("#"):
            continue
        if not raw.strip():
            if cur:
                stanzas.append(cur)
            cur = []
        elif raw[0] in " \t" and cur:
            field, value = cur[-1]
            cur[-1] = (field, f"{value} {raw.strip()}".strip())
        elif ":" in raw:
            field, value = raw.split(":", 1)
            cur.append((field.strip(), value.strip()))
    if cur:
        stanzas.append(cur)
    return stanzas


def retarget_deb822(text: str, old: str, new: str) -> str:
    """deb822 sources (*.sources): each enabled stanza with `deb` among its types keeps the suites of
    release OLD, renamed to NEW; `deb-src`, other suites and disabled stanzas are dropped."""
    out = []
    for stanza in _stanzas(text):
        fields = {f.lower(): v for f, v in stanza}
        if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
            continue
        suites = [s for s in (_suite(x, old, new) for x in fields.get("suites", "").split()) if s is not None]
        if not suites:
            continue
        lines = []
        for field, value in stanza:
            if field.lower() == "types":
                value = "deb"
            elif field.lower() == "suites":
                value = " ".join(suites)
            lines.append(f"{field}: {value}")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def system_codename(os_release: Path = Path("/etc/os-release")) -> str:
    try:
        for line in os_release.read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    raise FetchError(f"no VERSION_CODENAME in {os_release}: cannot tell which suite to rename to {RELEASE}")


def private_sources(apt_etc: Path, old: str, new: str) -> tuple[str, str]:
    """(one-line sources, deb822 sources) of release NEW derived from the system's apt sources."""
    parts = apt_etc / "sources.list.d"
    lists = [apt_etc / "sources.list"] + (sorted(parts.glob("*.list")) if parts.is_dir() else [])
    debs = sorted(parts.glob("*.sources")) if parts.is_dir() else []
    one_line = "".join(retarget_one_line(p.read_text(errors="replace"), old, new) for p in lists if p.is_file())
    deb822 = "\n".join(retarget_deb822(p.read_text(errors="replace"), old, new) for p in debs)
    return one_line, deb822


def _apt(args: list[str], conf: list[str], cwd: Path) -> None:
    r = subprocess.run(["apt-get", "-q", *conf, *args], cwd=cwd, capture_output=True, text=True, check=False,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C"))
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise FetchError(f"apt-get {args[0]} failed (exit {r.returncode}): {' / '.join(tail)}")


def download(package: str, workdir: Path, release: str = RELEASE, apt_etc: Path = Path("/etc/apt")) -> Path:
    """`apt-get download PACKAGE` from RELEASE into WORKDIR/debs under a private apt state; the .deb."""
    old = system_codename()
    one_line, deb822 = private_sources(apt_etc, old, release)
    if not one_line.strip() and not deb822.strip():
        raise FetchError(f"no {old} sources in {apt_etc} to derive {release} sources from")
    state = workdir / f"apt-{release}"
    shutil.rmtree(state, ignore_errors=True)
    for d in ("sources.list.d", "lists/partial", "cache/archives/partial", "debs"):
        (state / d).mkdir(parents=True)
    (state / "sources.list").write_text(one_line)
    (state / "sources.list.d" / f"{release}.sources").write_text(deb822)
    (state / "apt.conf").write_text(_CLEAR_HOOKS)
    conf = ["-c", str(state / "apt.conf"),
            "-o", f"Dir::Etc::sourcelist={state / 'sources.list'}",
            "-o", f"Dir::Etc::sourceparts={state / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={state / 'lists'}",
            "-o", f"Dir::Cache={state / 'cache'}",
            # root would hand downloads to the _apt user, who cannot write into this private dir
            "-o", "APT::Sandbox::User=root"]
    _apt(["update"], conf, state)
    _apt(["download", package], conf, state / "debs")
    debs = sorted((state / "debs").glob(f"{package}_*.deb"))
    if not debs:
        raise FetchError(f"apt-get download {package} left no .deb in {state / 'debs'}")
    return debs[-1]


def unpack(deb: Path, dest: Path) -> None:
    """dpkg-deb -x into DEST, through a temporary directory so a half unpacked tree is never used."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise FetchError(f"dpkg-deb -x {deb.name} failed: {r.stderr.strip()}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def binary_version(exe: Path) -> str:
    try:
        r = subprocess.run([str(exe), "version"], capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip()


def restic(cache: Path = DEFAULT_CACHE) -> Path:
    """The restic 0.18 binary under CACHE/restic-0.18, fetched and unpacked when missing."""
    dest = cache / f"restic-{RESTIC_VERSION}"
    exe = dest / "usr/bin/restic"
    if binary_version(exe).startswith(f"restic {RESTIC_VERSION}."):
        return exe
    unpack(download("restic", cache), dest)
    version = binary_version(exe)
    if not version.startswith(f"restic {RESTIC_VERSION}."):
        raise FetchError(f"{RELEASE}'s restic package gave {version or 'no runnable restic'}, "
                         f"not restic {RESTIC_VERSION}")
    return exe


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the unpacked tools are kept")
    args = p.parse_args(argv)
    try:
        exe = restic(args.cache)
    except FetchError as e:
        sys.exit(f"cannot fetch restic {RESTIC_VERSION}: {e}")
    print(f"{exe}: {binary_version(exe)}")


if __name__ == "__main__":
    main()
