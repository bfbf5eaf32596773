"""Every command's `--json` output against its schema in docs/schemas/: each command (found by walking
the click tree, so a new command without a case or a schema fails here) runs once succeeding and
once failing, on a copy of one local repository holding two backups of the sample disk, and every
stdout line must be an object with `event` that its command's schema accepts.

Commands that need what this machine cannot offer run their failure path twice (SUCCESS_IMPOSSIBLE):
`login` (a browser and a cloud account), `mount` and `serve` (they run until stopped; neither has a
JSON result), `retain` (S3 Object Lock) and `schedule install` (a running systemd or cron as root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jsonschema
import pytest

from tests.conftest import Cli

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "docs" / "schemas"

SUCCESS_IMPOSSIBLE = {"login", "mount", "serve", "retain", "schedule install"}


@dataclass
class World:
    base: Path  # tmp dir with repo/, cache/, the passphrase, the disk image and a config file
    snap: str  # the newest snapshot's id


def _commands() -> list[str]:
    import typer.main

    from agent.cli.main import app

    found: list[str] = []

    def walk(cmd, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])
        else:
            found.append(" ".join(path))

    walk(typer.main.get_command(app), [])
    return sorted(found)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("json-world"))


def build_world(base: Path) -> World:
    cli = Cli(base)
    disk = base / "disk.img"
    subprocess.run([sys.executable, "-m", "tests.diskimage", "build", str(disk), "--size-mib", "32"], check=True,
                   capture_output=True)
    cli("init", "--pack-size", "1")
    cli("backup", str(disk), "--time", "2026-01-01T01:00:00Z")
    subprocess.run([sys.executable, "-m", "tests.diskimage", "change", str(disk)], check=True, capture_output=True)
    snap = cli("backup", str(disk), "--json").json()["snapshot_id"]
    # an incomplete run of another source: its record (times stored with +00:00) in `snapshots --all`
    (base / "other.img").write_bytes(os.urandom(4 << 20))
    assert cli("backup", str(base / "other.img"), "--max-duration", "0s", check=False).code == 3
    (base / "agent.toml").write_text(f'repository = "{cli.repo}"\npassphrase_file = "{cli.passfile}"\n\n'
                                     f'[[sources]]\nname = "disk"\npath = "{disk}"\n')
    (base / "agent.toml").chmod(0o600)
    return World(base, snap)


def _fresh(world: World, tmp: Path) -> Cli:
    """A private copy of the world: commands that change the repository do not affect each other."""
    cli = Cli(tmp)
    shutil.copytree(world.base / "repo", cli.repo)
    shutil.copytree(world.base / "cache", tmp / "cache")
    cli.env["AGENT_STATE_DIR"] = str(tmp / "state")
    return cli


def _other_repo(cli: Cli) -> list[str]:
    target = cli.tmp / "target"
    cli("--repo", str(target), "init", "--pack-size", "1")
    return ["--to-repo", str(target), "--to-passphrase-file", str(cli.passfile)]


Args = Callable[[Cli, World], list[str]]
# per command: the arguments of a run that succeeds (after the command's name) and of one that fails
CASES: dict[str, tuple[Args, Args]] = {
    "init": (lambda c, w: ["--repo", str(c.tmp / "new"), "init"], lambda c, w: ["init"]),
    "backup": (lambda c, w: ["backup", str(w.base / "disk.img")], lambda c, w: ["backup", str(c.tmp / "none.img")]),
    "snapshots": (lambda c, w: ["snapshots", "--all"], lambda c, w: ["--repo", str(c.tmp / "none"), "snapshots"]),
    "restore": (lambda c, w: ["restore", "latest", "--to", str(c.tmp / "out.img")],
                lambda c, w: ["restore", "ffffffff", "--to", str(c.tmp / "out.img")]),
    "ls": (lambda c, w: ["ls", f"{w.snap[:8]}:2:/home/user"], lambda c, w: ["ls", f"{w.snap[:8]}:9"]),
    "extract": (lambda c, w: ["extract", f"{w.snap[:8]}:2:/home/user", "--to", str(c.tmp / "x")],
                lambda c, w: ["extract", f"{w.snap[:8]}:2:/no/such", "--to", str(c.tmp / "x")]),
    "check": (lambda c, w: ["check"], lambda c, w: ["--repo", str(c.tmp / "none"), "check"]),
    "forget": (lambda c, w: ["forget", "--keep-last", "1", "--prune"], lambda c, w: ["forget", "--keep-tag", "no"]),
    "prune": (lambda c, w: ["prune"], lambda c, w: ["prune", "--max-unused", "x"]),
    "retain": (lambda c, w: ["retain"], lambda c, w: ["retain"]),
    "stats": (lambda c, w: ["stats"], lambda c, w: ["--repo", str(c.tmp / "none"), "stats"]),
    "unlock": (lambda c, w: ["unlock"], lambda c, w: ["--repo", str(c.tmp / "none"), "unlock"]),
    "doctor": (lambda c, w: ["doctor"], lambda c, w: ["--repo", "nosuch://bucket", "doctor"]),
    "login": (lambda c, w: ["login", "gdrive"], lambda c, w: ["login", "gdrive"]),
    "run": (lambda c, w: ["--config", str(w.base / "agent.toml"), "run"],
            lambda c, w: ["--config", str(c.tmp / "none.toml"), "run"]),
    "mount": (lambda c, w: ["mount", str(c.tmp / "none")], lambda c, w: ["mount", str(c.tmp / "none")]),
    "verify": (lambda c, w: ["verify", "latest"], lambda c, w: ["verify", "ffffffff"]),
    "status": (lambda c, w: ["status"], lambda c, w: ["--repo", str(c.tmp / "none"), "status"]),
    "serve": (lambda c, w: ["serve", "--listen", "nowhere"], lambda c, w: ["serve", "--listen", "nowhere"]),
    "copy": (lambda c, w: ["copy", *_other_repo(c)], lambda c, w: ["copy", "--to-repo", str(c.tmp / "none")]),
    "ack": (lambda c, w: ["ack"], lambda c, w: ["ack", "ffffffff"]),
    "key add": (lambda c, w: ["key", "add", "--new-passphrase-file", str(c.passfile)],
                lambda c, w: ["key", "add", "--new-passphrase-file", str(c.tmp / "none")]),
    "key list": (lambda c, w: ["key", "list"], lambda c, w: ["--repo", str(c.tmp / "none"), "key", "list"]),
    "key remove": (lambda c, w: ["key", "remove", _spare_key(c)], lambda c, w: ["key", "remove", "ffffffff"]),
    "key passwd": (lambda c, w: ["key", "passwd", "--new-passphrase-file", str(c.passfile)],
                   lambda c, w: ["key", "passwd", "--new-passphrase-file", str(c.tmp / "none")]),
    "repair index": (lambda c, w: ["repair", "index"], lambda c, w: ["--repo", str(c.tmp / "none"), "repair", "index"]),
    "repair packs": (lambda c, w: ["repair", "packs"], lambda c, w: ["--repo", str(c.tmp / "none"), "repair", "packs"]),
    "repair snapshots": (lambda c, w: ["repair", "snapshots"],
                         lambda c, w: ["--repo", str(c.tmp / "none"), "repair", "snapshots"]),
    "config show": (lambda c, w: ["--config", str(w.base / "agent.toml"), "config", "show"],
                    lambda c, w: ["--config", str(c.tmp / "none.toml"), "config", "show"]),
    "config check": (lambda c, w: ["--config", str(w.base / "agent.toml"), "config", "check"],
                     lambda c, w: ["--config", str(c.tmp / "none.toml"), "config", "check"]),
    "schedule install": (lambda c, w: ["schedule", "install", "--at", "25:99"],
                         lambda c, w: ["schedule", "install", "--at", "25:99"]),
    "schedule remove": (lambda c, w: ["schedule", "remove", "--user"], lambda c, w: ["schedule", "remove", "--bogus"]),
    "schedule status": (lambda c, w: ["schedule", "status", "--user"], lambda c, w: ["schedule", "status", "--bogus"]),
}
#: exit codes a succeeding run may end with besides 0: `status` says "needs attention" (6) when a
#: source's latest backup is older than its threshold, as the world's first backup is
RESULT_CODES = {"status": {0, 6}}


def _spare_key(cli: Cli) -> str:
    cli("key", "add", "--new-passphrase-file", str(cli.passfile))
    return next(k["id"] for k in cli("key", "list", "--json").json()["keys"] if not k["current"])


def _schema(command: str) -> dict:
    return json.loads((SCHEMAS / f"{command.replace(' ', '_')}.json").read_text())


def _validate(command: str, out: str) -> list[dict]:
    schema = _schema(command)
    events = []
    for line in out.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict) and isinstance(event.get("event"), str), line
        jsonschema.validate(event, schema, format_checker=jsonschema.FormatChecker())
        events.append(event)
    return events


def test_every_command_has_a_case_and_a_schema():
    from agent.cli.json_schemas import schemas

    commands = _commands()
    assert sorted(CASES) == commands
    assert sorted(schemas()) == commands
    written = sorted(p.stem for p in SCHEMAS.glob("*.json") if p.stem != "common")
    assert written == sorted(c.replace(" ", "_") for c in commands)


def test_schema_files_are_generated_from_the_source():
    """docs/schemas/ is `make json-schemas` output: edit agent/cli/json_schemas.py, not the files."""
    from agent.cli.json_schemas import render

    for name, text in render().items():
        assert (SCHEMAS / name).read_text() == text, f"docs/schemas/{name} is stale: run `make json-schemas`"


@pytest.mark.parametrize("command", sorted(CASES))
def test_json_output_matches_the_schema(command, world, tmp_path):
    succeed, fail = CASES[command]
    cli = _fresh(world, tmp_path)
    res = cli("--json", *succeed(cli, world), check=False)
    events = _validate(command, res.out)
    if command in SUCCESS_IMPOSSIBLE:
        assert res.code != 0 and events and events[-1]["event"] == "error", (res.out, res.err)
    else:
        assert res.code in RESULT_CODES.get(command, {0}), (res.code, res.out, res.err)
        assert events and events[-1]["event"] == command.replace(" ", "_"), res.out
    res = cli("--json", *fail(cli, world), check=False)
    events = _validate(command, res.out)
    assert res.code not in (0, *RESULT_CODES.get(command, ())), (res.out, res.err)
    assert events and events[-1] == {**events[-1], "event": "error", "code": res.code}, (res.out, res.err)
    first_error = next(ln for ln in res.err.splitlines() if ln.startswith("error: ") or "Error" in ln)
    assert events[-1]["message"] in first_error or first_error.endswith(events[-1]["message"]), res.err


def test_warnings_are_events_before_the_result(world, tmp_path):
    """A warning the command prints on stderr (here: the copy target cuts disks differently) is also
    a warning event on stdout, before the result line."""
    cli = _fresh(world, tmp_path)
    res = cli("--json", "copy", *_other_repo(cli))
    events = _validate("copy", res.out)
    kinds = [e["event"] for e in events]
    assert "warning" in kinds and kinds[-1] == "copy", kinds
    warning = next(e for e in events if e["event"] == "warning")
    assert "cuts disks differently" in warning["message"] and "warning:" in res.err
