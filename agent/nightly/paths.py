"""Where the config file is looked for; kept free of heavy imports because every command asks."""

from __future__ import annotations

import os
from pathlib import Path

SYSTEM_CONFIG = Path("/etc/agent/agent.toml")


def config_candidates() -> list[Path]:
    """The user's file first (non-root), then the system-wide one."""
    if os.geteuid() == 0:
        return [SYSTEM_CONFIG]
    from platformdirs import user_config_dir

    return [Path(user_config_dir("agent")) / "agent.toml", SYSTEM_CONFIG]


def existing_default_config() -> Path | None:
    return next((p for p in config_candidates() if p.exists()), None)
