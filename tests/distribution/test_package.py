"""The wheel and sdist build, pass `twine check`, and install as the docs say (marker `dist`).

What a new user does: `pipx install 'agent-imagebackup[s3,sftp]'` must give a working `agent` with the
backends' SDKs, and a minimal install must name the distribution to add when an extra is missing. Both
install from the wheel built here, with dependencies from the package index.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.dist

ROOT = Path(__file__).resolve().parents[2]
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]


def _run(*argv: str | os.PathLike, env: dict[str, str] | None = None, timeout: float = 900):
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--outdir", out, ROOT)
    found = {p.suffix if p.suffix == ".whl" else ".tar.gz": p for p in out.iterdir()}
    assert set(found) == {".whl", ".tar.gz"}, found
    return found


def test_twine_check_passes(dists):
    res = _run(sys.executable, "-m", "twine", "check", "--strict", *dists.values())
    assert res.stdout.count("PASSED") == 2, res.stdout


def test_wheel_metadata_names_the_distribution_and_licence(dists):
    import zipfile

    with zipfile.ZipFile(dists[".whl"]) as whl:
        meta = next(whl.read(n).decode() for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
    assert f"Name: {NAME}\n" in meta
    assert "License-Expression: Apache-2.0\n" in meta


def test_pipx_install_with_extras_gives_a_working_agent(dists, tmp_path):
    pipx = shutil.which("pipx")
    if pipx is None:
        pytest.fail("pipx is missing: apt-get install pipx (make dist-deps)")
    env = {"PIPX_HOME": str(tmp_path / "pipx"), "PIPX_BIN_DIR": str(tmp_path / "bin")}
    _run(pipx, "install", f"{dists['.whl']}[s3,sftp]", env=env)
    from agent import __version__

    res = _run(tmp_path / "bin" / "agent", "--version")
    assert res.stdout.startswith(f"agent {__version__} (repository format "), res.stdout
    _run(tmp_path / "pipx" / "venvs" / NAME / "bin" / "python", "-c", "import boto3, paramiko")


def test_minimal_install_names_the_distribution_in_the_missing_extra_hint(dists, tmp_path):
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(venv / "bin" / "pip", "install", "-q", dists[".whl"])
    proc = subprocess.run([str(venv / "bin" / "agent"), "--repo", "s3://bucket/repo", "snapshots"],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AGENT_PASSPHRASE": "x",
                               "AGENT_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 17, proc.stderr
    hint = f"pip install '{NAME}[s3]'"
    assert proc.stderr.splitlines()[0].startswith("error:") and hint in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"pipx install '{NAME}[s3,sftp]'" in (ROOT / "docs/install.md").read_text()
