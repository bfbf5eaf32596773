"""Every install instruction names our distribution, not the unrelated `agent` on the package index.

The index's `agent` (0.1.x, someone else's) installs without error and leaves no `agent` command, so a
stale `pip install 'agent[s3]'` in a page or a message is a trap for new users. Fast: runs by default.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]

# pip/pipx install lines naming the bare `agent` distribution, with or without extras
STALE = re.compile(r"""(pipx? (?:install|upgrade|download)(?: +-[-\w=]+)* +['"]?agent(?:\[|['"`]|[ \t]|$))""", re.M)
PAGES = ["docs/install.md", "docs/quickstart.md", "docs/bare-metal.md", "docs/restore.md"]


def _texts() -> dict[str, str]:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "agent").rglob("*.py"),
             *(ROOT / "backends").rglob("*.py")]
    return {str(p.relative_to(ROOT)): p.read_text() for p in files}


def test_distribution_name_is_ours():
    assert NAME == "agent-imagebackup"


def test_no_install_line_names_the_bare_agent_distribution():
    stale = {path: m.group(1) for path, text in _texts().items() for m in STALE.finditer(text)}
    assert not stale, stale


def test_install_pages_name_the_distribution():
    for page in PAGES:
        assert NAME in (ROOT / page).read_text(), page
