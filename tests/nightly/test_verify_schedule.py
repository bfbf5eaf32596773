"""[verify] in agent.toml: `agent run` verifies each source's newest snapshot (chunks and filesystems)
when it is due and not otherwise; the result goes into the run report, the metrics and the alerts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.nightly.metrics import parse_samples
from tests.diskimage import MissingTool, build_sample_image
from tests.servers.webhook import webhook_server


@pytest.fixture
def setup(tmp_path, cli):
    try:
        info = build_sample_image(tmp_path / "disk.img", size_mib=48, esp_mib=8)
    except MissingTool as exc:
        pytest.skip(str(exc))
    other = tmp_path / "other.img"
    other.write_bytes(bytes(1 << 20))
    cli("init")
    return info, other


def _config(tmp_path: Path, cli, disk: Path, other: Path, hook_url: str) -> Path:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f"""
repository = "{cli.repo}"
passphrase_file = "{cli.passfile}"

[[sources]]
name = "system"
path = "{disk}"

[[sources]]
name = "scratch"
path = "{other}"

[verify]
every = "7d"
fsck = true
sources = ["system"]

[metrics]
textfile = "{tmp_path / 'agent.prom'}"

[notify]
on = ["failure"]

[notify.webhook]
url = "{hook_url}"
""")
    cfg.chmod(0o600)
    return cfg


def _run(cli, tmp_path: Path, cfg: Path):
    res = cli("--config", str(cfg), "run", "--json", check=False,
              env={"AGENT_REPO": "", "AGENT_PASSPHRASE_FILE": "", "AGENT_STATE_DIR": str(tmp_path / "state")})
    summary = [json.loads(line) for line in res.out.splitlines() if '"event": "run"' in line][-1]
    return res.code, {s["name"]: s for s in summary["sources"]}, summary


def _metrics(tmp_path: Path) -> dict:
    return parse_samples((tmp_path / "agent.prom").read_text())


def test_verify_runs_when_due_and_not_otherwise(tmp_path, cli, setup):
    info, other = setup
    with webhook_server() as hook:
        cfg = _config(tmp_path, cli, info.path, other, hook.url)
        code, sources, _ = _run(cli, tmp_path, cfg)
        assert code == 0
        v = sources["system"]["verify"]
        assert v["status"] == "clean" and v["fsck"] and v["damaged_ranges"] == []
        assert [(p["number"], p["filesystem"], p["status"]) for p in v["partitions"]] == \
            [(1, "vfat", "clean"), (2, "ext4", "clean")]
        assert sources["scratch"]["verify"] is None  # not in verify.sources
        m = _metrics(tmp_path)
        assert m[("agent_verify_status", (("source", "system"),))] == 1
        assert m[("agent_verify_partition_clean", (("filesystem", "ext4"), ("partition", "2"),
                                                   ("source", "system")))] == 1
        first = m[("agent_verify_timestamp_seconds", (("source", "system"),))]
        state = json.loads((tmp_path / "state" / "state.json").read_text())
        assert set(state["last_verified"]) == {"system"}

        # the next night: not due; the metrics still describe the last verify
        code, sources, _ = _run(cli, tmp_path, cfg)
        assert code == 0 and sources["system"]["verify"] is None
        m = _metrics(tmp_path)
        assert m[("agent_verify_status", (("source", "system"),))] == 1
        assert m[("agent_verify_timestamp_seconds", (("source", "system"),))] == first

        # a week later (the state file says so): due again
        state["last_verified"]["system"] = (datetime.now(UTC) - timedelta(days=7, minutes=1)).isoformat()
        (tmp_path / "state" / "state.json").write_text(json.dumps(state))
        code, sources, _ = _run(cli, tmp_path, cfg)
        assert code == 0 and sources["system"]["verify"]["status"] == "clean"
        assert _metrics(tmp_path)[("agent_verify_timestamp_seconds", (("source", "system"),))] > first
        assert hook.requests == []  # only failures alert


def test_a_damaged_filesystem_alerts_like_a_failed_backup(tmp_path, cli, setup):
    info, other = setup
    from tests.verify.disks import Part, damage_ext4

    root = info.partitions[1]
    damage_ext4(info.path, Part(root.number, "ext4", root.start, root.size))
    with webhook_server() as hook:
        cfg = _config(tmp_path, cli, info.path, other, hook.url)
        code, sources, summary = _run(cli, tmp_path, cfg)
        assert code == 1 and summary["status"] == "failure"
        assert sources["system"]["status"] == "ok"  # the backup itself worked
        v = sources["system"]["verify"]
        assert v["status"] == "damaged" and v["partitions"][1]["status"] == "damaged"
        (req,) = hook.requests
        assert req.json()["status"] == "failure" and "1 of 1 verify damaged" in req.json()["summary"]
        m = _metrics(tmp_path)
        assert m[("agent_verify_status", (("source", "system"),))] == 0
        assert m[("agent_verify_partition_clean", (("filesystem", "ext4"), ("partition", "2"),
                                                   ("source", "system")))] == 0
        assert m[("agent_last_run_success", ())] == 0
        # not recorded as verified: the next run tries again
        state = json.loads((tmp_path / "state" / "state.json").read_text())
        assert state["last_verified"] == {}
        code, sources, _ = _run(cli, tmp_path, cfg)
        assert code == 1 and sources["system"]["verify"]["status"] == "damaged"


def test_verify_sources_must_name_sources(tmp_path, cli):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[[sources]]\nname = "a"\npath = "/dev/null"\n\n[verify]\nevery = "1w"\nsources = ["b"]\n')
    res = cli("--config", str(cfg), "run", check=False)
    assert res.code == 2 and "verify.sources names no source called b" in res.err, res.err
    cfg.write_text('[[sources]]\nname = "a"\npath = "/dev/null"\n\n[verify]\nevery = "weekly"\n')
    res = cli("--config", str(cfg), "run", check=False)
    assert res.code == 2 and "verify.every" in res.err, res.err
