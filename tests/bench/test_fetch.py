"""bench.fetch derives the next release's apt sources from the machine's own: only the release's
own suites are renamed, everything else (vendors' suites, source lines, disabled entries) is left
out, and the fields apt needs to trust the archive (Signed-By, options) are carried over."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import fetch
from bench.fetch import _stanzas, private_sources, retarget_deb822, retarget_one_line

SUITES = ["bookworm", "bookworm-updates", "bookworm-security", "bookworm-backports", "bookwormish", "nodistro",
          "cloud-sdk-bookworm", "stable", "trixie"]


def _renamed(suite: str) -> str | None:
    if suite == "bookworm" or suite.startswith("bookworm-"):
        return "trixie" + suite[len("bookworm"):]
    return None


stanza = st.fixed_dictionaries({
    "types": st.lists(st.sampled_from(["deb", "deb-src"]), min_size=1, max_size=2, unique=True),
    "uri": st.integers(0, 99).map(lambda n: f"http://mirror{n}.example/debian"),
    "suites": st.lists(st.sampled_from(SUITES), min_size=1, max_size=4, unique=True),
    "components": st.lists(st.sampled_from(["main", "contrib", "non-free-firmware"]), min_size=1, max_size=3,
                            unique=True),
    "enabled": st.sampled_from([None, "yes", "no"]),
    "comment": st.booleans(),
    "wrap": st.booleans(),
})


def _render(s: dict) -> str:
    lines = ["# a comment with a colon: here"] if s["comment"] else []
    lines += [f"Types: {' '.join(s['types'])}", f"URIs: {s['uri']}"]
    if s["wrap"]:  # a continuation line, as apt allows
        lines += ["Suites: " + s["suites"][0], *(f" {x}" for x in s["suites"][1:])]
    else:
        lines.append("Suites: " + " ".join(s["suites"]))
    lines += [f"Components: {' '.join(s['components'])}", "Signed-By: /usr/share/keyrings/example.gpg"]
    if s["enabled"]:
        lines.append(f"Enabled: {s['enabled']}")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(stanza, max_size=5))
def test_deb822_keeps_exactly_the_release_suites_renamed(stanzas):
    out = _stanzas(retarget_deb822("\n".join(_render(s) for s in stanzas), "bookworm", "trixie"))
    expected = []
    for s in stanzas:
        suites = [r for r in map(_renamed, s["suites"]) if r]
        if "deb" in s["types"] and s["enabled"] != "no" and suites:
            expected.append((s["uri"], suites, s["components"]))
    assert [(f["URIs"], f["Suites"].split(), f["Components"].split()) for f in map(dict, out)] == expected
    for f in map(dict, out):
        assert f["Types"] == "deb"
        assert f["Signed-By"] == "/usr/share/keyrings/example.gpg"


line = st.fixed_dictionaries({
    "type": st.sampled_from(["deb", "deb-src"]),
    "options": st.sampled_from(["", "[signed-by=/usr/share/keyrings/k.gpg] ", "[ arch=amd64 trusted=no ] "]),
    "uri": st.integers(0, 99).map(lambda n: f"http://mirror{n}.example/debian"),
    "suite": st.sampled_from(SUITES),
    "components": st.lists(st.sampled_from(["main", "contrib"]), min_size=1, max_size=2, unique=True),
    "comment": st.sampled_from(["", "  # trailing", "\n# whole line\n", "\n\n"]),
})


@settings(max_examples=200, deadline=None)
@given(st.lists(line, max_size=6))
def test_one_line_keeps_exactly_the_release_suites_renamed(lines):
    text = "".join(f"{x['type']} {x['options']}{x['uri']} {x['suite']} {' '.join(x['components'])}{x['comment']}\n"
                   for x in lines)
    out = retarget_one_line(text, "bookworm", "trixie").splitlines()
    expected = [f"deb {x['options']}{x['uri']} {_renamed(x['suite'])} {' '.join(x['components'])}"
                for x in lines if x["type"] == "deb" and _renamed(x["suite"])]
    assert out == expected


def test_private_sources_read_what_apt_reads(tmp_path):
    """sources.list, *.list and *.sources; a file apt ignores (another extension) stays out."""
    etc = tmp_path / "apt"
    (etc / "sources.list.d").mkdir(parents=True)
    (etc / "sources.list").write_text("deb http://a.example/debian bookworm main\n")
    (etc / "sources.list.d" / "extra.list").write_text("deb http://b.example/debian bookworm-updates main\n")
    (etc / "sources.list.d" / "vendor.sources").write_text(
        "Types: deb\nURIs: http://c.example/x\nSuites: nodistro\nComponents: main\n\n"
        "Types: deb deb-src\nURIs: http://d.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    (etc / "sources.list.d" / "off.list.disabled").write_text("deb http://e.example/debian bookworm main\n")
    one_line, deb822 = private_sources(etc, "bookworm", "trixie")
    assert one_line == ("deb http://a.example/debian trixie main\n"
                        "deb http://b.example/debian trixie-updates main\n")
    assert deb822 == "Types: deb\nURIs: http://d.example/debian-security\nSuites: trixie-security\nComponents: main\n"


def test_download_refuses_when_no_source_is_of_this_release(tmp_path):
    etc = tmp_path / "apt"
    etc.mkdir()
    (etc / "sources.list").write_text("deb http://c.example/x nodistro main\n")
    with pytest.raises(fetch.FetchError, match="no .* sources"):
        fetch.download("restic", tmp_path / "cache", apt_etc=etc)
    assert not (tmp_path / "cache").exists()


def _deb(tmp_path: Path, version_line: str) -> Path:
    """A real package built by dpkg-deb whose usr/bin/restic prints VERSION_LINE."""
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True, exist_ok=True)
    (root / "DEBIAN" / "control").write_text("Package: restic\nVersion: 0.18.0-1\nArchitecture: all\n"
                                             "Maintainer: bench <bench@example.org>\nDescription: test\n")
    exe = root / "usr/bin/restic"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(f"#!/bin/sh\necho '{version_line}'\n")
    exe.chmod(0o755)
    deb = tmp_path / "restic_0.18.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True,
                   capture_output=True)
    return deb


def test_unpacked_binary_is_reused_without_apt(tmp_path, monkeypatch):
    cache = tmp_path / "tools"
    fetch.unpack(_deb(tmp_path, "restic 0.18.0 compiled with go1.24.4 on linux/amd64"), cache / "restic-0.18")
    assert not (cache / "restic-0.18.tmp").exists()
    monkeypatch.setenv("PATH", str(tmp_path / "no-apt-here"))  # apt-get cannot run: the cache must answer
    assert fetch.restic(cache) == cache / "restic-0.18/usr/bin/restic"
    assert os.access(fetch.restic(cache), os.X_OK)


def test_unpack_replaces_an_older_tree(tmp_path):
    dest = tmp_path / "tools" / "restic-0.18"
    (dest / "usr/bin").mkdir(parents=True)
    (dest / "usr/bin/stale").write_text("old")
    fetch.unpack(_deb(tmp_path, "restic 0.18.0"), dest)
    assert not (dest / "usr/bin/stale").exists()
    assert fetch.binary_version(dest / "usr/bin/restic") == "restic 0.18.0"
