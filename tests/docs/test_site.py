"""The documentation site builds with `mkdocs build --strict`: no broken link or anchor, no page left
out of the nav, no nav entry without a page. `make test` runs the same build before pytest; this test
covers a plain `pytest` run too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.examples import REPO_ROOT


def _mkdocs() -> str | None:
    beside = Path(sys.executable).parent / "mkdocs"
    return str(beside) if beside.exists() else shutil.which("mkdocs")


def test_site_builds_strictly(tmp_path):
    mkdocs = _mkdocs()
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    # Without -q: with it, mkdocs drops the warnings --strict counts and exits 0 on a broken link.
    proc = subprocess.run([mkdocs, "build", "--strict", "-d", str(tmp_path / "site")], cwd=REPO_ROOT,
                          capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}{proc.stderr}"
    assert (tmp_path / "site" / "bare-metal" / "index.html").exists()
