"""Scheduling: units checked by `systemd-analyze verify`, the cron line executed for real (flock keeps two
runs apart), and `agent schedule install|remove|status` through the CLI into a temporary root.

`systemd-analyze verify` works here although systemd is not PID 1: it loads the unit files offline
(no --root needed; `--man=no` skips the check that Documentation= man pages exist) but does insist
that ExecStart's binary exists, so the units point at this interpreter (`python -m agent`), which is
what `agent schedule install` writes when run that way. Unknown keys only warn, so stderr must be empty.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.nightly import schedule as sch
from agent.nightly.state import record_finish
from tests.nightly.samples import failing_report, ok_source, report

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)")
PY_AGENT = [sys.executable, "-m", "agent"]


def _verify(*units: Path) -> None:
    proc = subprocess.run([ANALYZE, "verify", "--man=no", *map(str, units)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def _write_units(d: Path, s: sch.Schedule, user: bool = False) -> tuple[Path, Path]:
    d.mkdir(parents=True, exist_ok=True)
    (d / sch.SERVICE).write_text(sch.render_service(s, user=user))
    (d / sch.TIMER).write_text(sch.render_timer(s))
    return d / sch.SERVICE, d / sch.TIMER


# ---- rendering --------------------------------------------------------------------------------------

@needs_analyze
def test_units_pass_systemd_analyze_verify(tmp_path):
    s = sch.Schedule(config_path="/etc/agent/agent.toml", at="02:30", randomized_delay_s=900, command=PY_AGENT)
    service, timer = _write_units(tmp_path / "system", s)
    _verify(service, timer)
    text = service.read_text()
    assert f"ExecStart={sys.executable} -m agent --config /etc/agent/agent.toml run\n" in text
    for line in ("Type=oneshot", "Nice=19", "IOSchedulingClass=idle", "CPUSchedulingPolicy=batch",
                 "After=network-online.target"):
        assert line + "\n" in text
    assert "EnvironmentFile" not in text and "LoadCredential" not in text and "AGENT_PASSPHRASE" not in text
    ttext = timer.read_text()
    for line in ("OnCalendar=*-*-* 02:30:00", "Persistent=true", "RandomizedDelaySec=900", "WantedBy=timers.target"):
        assert line + "\n" in ttext


@needs_analyze
def test_system_unit_is_hardened_and_gets_the_passphrase_as_a_credential(tmp_path):
    s = sch.Schedule(config_path="/etc/agent/agent.toml", command=PY_AGENT, passphrase_file="/etc/agent/passphrase",
                     writable=("/srv/backup",))
    service, timer = _write_units(tmp_path / "system", s)
    _verify(service, timer)
    text = service.read_text()
    for line in ("ProtectSystem=strict", "ProtectHome=read-only", "PrivateTmp=yes", "NoNewPrivileges=yes",
                 "PrivateDevices=no", "CacheDirectory=agent", "StateDirectory=agent",
                 "Environment=AGENT_CACHE_DIR=%C/agent", "LoadCredential=passphrase:/etc/agent/passphrase",
                 "Environment=AGENT_PASSPHRASE_FILE=%d/passphrase"):
        assert line + "\n" in text, text
    rw = next(line for line in text.splitlines() if line.startswith("ReadWritePaths="))
    assert {"-/srv/backup", "-/run/lock"} <= set(rw.removeprefix("ReadWritePaths=").split())
    # a flag, so it wins over the config file's own passphrase_file (docs/configuration.md#precedence)
    assert f"ExecStart={sys.executable} -m agent --passphrase-file %d/passphrase --config /etc/agent/agent.toml run\n" \
        in text
    user_text = sch.render_service(s, user=True)  # an unprivileged manager cannot set up the namespaces
    assert "ProtectSystem" not in user_text and "LoadCredential" not in user_text


@needs_analyze
def test_quoting_environment_file_and_user_units_verify(tmp_path):
    s = sch.Schedule(config_path=str(tmp_path / "my conf 100%.toml"), randomized_delay_s=0, command=PY_AGENT,
                     environment_file=str(tmp_path / "agent.env"))
    service, timer = _write_units(tmp_path / "user", s, user=True)
    _verify(service, timer)
    text = service.read_text()
    assert f'--config "{tmp_path}/my conf 100%%.toml" run\n' in text
    assert f"EnvironmentFile={tmp_path}/agent.env\n" in text
    assert "network-online" not in text  # no such target in a user manager
    assert "RandomizedDelaySec" not in timer.read_text()


@needs_analyze
def test_verify_does_catch_mistakes(tmp_path):
    """The check above is not vacuous: a bad time or a missing binary fails verification."""
    s = sch.Schedule(config_path="/etc/agent/agent.toml", command=["/nonexistent/agent"])
    service, timer = _write_units(tmp_path, s)
    assert subprocess.run([ANALYZE, "verify", "--man=no", str(service)], capture_output=True).returncode != 0
    timer.write_text(timer.read_text().replace("01:00:00", "25:00:00"))
    assert subprocess.run([ANALYZE, "verify", "--man=no", str(timer)], capture_output=True).returncode != 0


def test_time_and_delay_parsing():
    assert sch.parse_at("1:05") == (1, 5)
    assert [sch.parse_delay(t) for t in ("15m", "1h", "90s", "1h30m", "0", "600")] == [900, 3600, 90, 5400, 0, 600]
    for bad in ("24:00", "7", "01:60", "noon"):
        with pytest.raises(Exception, match="HH:MM"):
            sch.parse_at(bad)


def test_cron_offset_is_fixed_per_host_and_within_the_delay():
    s = sch.Schedule(config_path="/c.toml", at="23:55", randomized_delay_s=900, command=["/usr/bin/agent"])
    times = {host: sch.cron_time(s, host) for host in ("web1", "web2", "db1", "db2", "mail")}
    assert times == {host: sch.cron_time(s, host) for host in times}  # stable
    for h, m in times.values():
        minutes = (h * 60 + m - (23 * 60 + 55)) % 1440
        assert 0 <= minutes <= 15
    assert len(set(times.values())) > 1  # spread
    assert sch.cron_time(sch.Schedule(config_path="/c", at="01:00", randomized_delay_s=0, command=["a"]), "x") == (1, 0)


def _cron_command(text: str) -> str:
    line = next(line for line in text.splitlines() if line and line[0].isdigit())
    return line.split(" root ", 1)[1].replace("\\%", "%")  # what cron hands to /bin/sh


def test_cron_line_runs_and_never_overlaps(tmp_path):
    """Execute the line as cron would, with stand-ins for the agent and logger that record what they get."""
    bin_dir, out = tmp_path / "bin", tmp_path / "syslog"
    bin_dir.mkdir()
    (bin_dir / "logger").write_text(f'#!/bin/sh\necho "[$*]" >> {out}; cat >> {out}\n')
    (bin_dir / "fake-agent").write_text("#!/bin/sh\necho \"agent $*\"; echo problem >&2; exit 7\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    lock = tmp_path / "run.lock"
    s = sch.Schedule(config_path=str(tmp_path / "50% off.toml"), command=[str(bin_dir / "fake-agent")],
                     lock_file=str(lock))
    text = sch.render_cron(s, "web1")
    assert "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" in text
    assert "50\\% off.toml" in text  # a bare % would end cron's command line
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["/bin/sh", "-c", _cron_command(text)], env=env, check=True, timeout=30)
    assert out.read_text().splitlines() == ["[-t agent]", f"agent --quiet --config {tmp_path}/50% off.toml run",
                                            "problem"]
    out.unlink()
    with open(lock, "w") as held:  # a run still going
        fcntl.flock(held, fcntl.LOCK_EX)
        subprocess.run(["/bin/sh", "-c", _cron_command(text)], env=env, check=True, timeout=30)
    assert out.read_text().splitlines() == ["[-t agent]", "the previous run is still active; this run was skipped"]


# ---- the CLI ----------------------------------------------------------------------------------------

@pytest.fixture
def root(tmp_path, cli) -> Path:
    r = tmp_path / "root"
    (r / "etc/cron.d").mkdir(parents=True)
    _process(r, 4242, "cron")  # a cron daemon runs in this tree (agent.nightly.daemons reads root/proc)
    cli.env.update(AGENT_SCHEDULE_ROOT=str(r), AGENT_STATE_DIR=str(tmp_path / "state"))
    return r


@pytest.fixture
def config(tmp_path) -> Path:
    p = tmp_path / "agent.toml"
    p.write_text("")  # every section has defaults
    return p


def test_cli_install_cron_is_idempotent_and_removable(cli, root, config):
    res = cli("schedule", "install", "--at", "02:30", "--config", str(config))
    cron = root / "etc/cron.d/agent-backup"
    assert res.out.startswith("installed cron schedule every day at 02:")
    assert "runs: " in res.out and res.err == ""
    text = cron.read_text()
    assert (cron.stat().st_mode & 0o777) == 0o644
    assert f" -m agent --quiet --config {config} run;" in text
    assert " root { flock -n -E 75 /run/lock/agent-backup.lock " in text and text.endswith("| logger -t agent\n")
    h, m = map(int, _cron_fields(text))
    assert 0 <= (h * 60 + m) - (2 * 60 + 30) <= 15

    mtime = cron.stat().st_mtime_ns
    again = cli("schedule", "install", "--at", "02:30", "--config", str(config))
    assert "already installed, unchanged" in again.out
    assert cron.read_text() == text and cron.stat().st_mtime_ns == mtime

    cli("schedule", "install", "--at", "04:00", "--randomized-delay", "0", "--config", str(config))
    assert _cron_fields(cron.read_text()) == ("04", "00")
    assert os.listdir(cron.parent) == ["agent-backup"]  # no temporary files

    assert cli("schedule", "remove").out.strip() == f"removed {cron}"
    assert not cron.exists()
    assert cli("schedule", "remove").out.strip() == "no nightly schedule was installed"


def _process(root: Path, pid: int, comm: str, cmdline: str = "") -> None:
    """Test data: one process as /proc shows it."""
    d = root / "proc" / str(pid)
    d.mkdir(parents=True)
    (d / "comm").write_text(comm + "\n")
    (d / "cmdline").write_text(cmdline.replace(" ", "\0") + "\0")


def test_cron_and_systemd_are_found_only_when_running(tmp_path):
    from agent.nightly.daemons import cron_daemon, systemd_running

    r = tmp_path / "r"
    _process(r, 1, "init")
    _process(r, 77, "sshd")
    assert cron_daemon(r) is None and not systemd_running(r)
    _process(r, 78, "busybox", "busybox crond -f")
    assert cron_daemon(r) == "busybox crond"
    _process(r, 79, "crond")
    assert cron_daemon(r) in ("crond", "busybox crond")
    (r / "proc/1/comm").write_text("systemd\n")  # PID 1 without a shared /run/systemd (a container)
    assert systemd_running(r)
    assert cron_daemon(tmp_path / "nothing") is None


def test_cli_install_refuses_cron_when_no_cron_daemon_runs(cli, root, config):
    """issue 24: /etc/cron.d present, neither systemd nor a cron daemon running: install reported
    success and status showed a next run."""
    shutil.rmtree(root / "proc")
    res = cli("schedule", "install", "--at", "01:00", "--config", str(config), check=False)
    assert res.code == 2 and "no cron daemon is running" in res.err and "would never run" in res.err, res.err
    assert "installed" not in res.out and not (root / "etc/cron.d/agent-backup").exists()
    res = cli("schedule", "install", "--cron", "--config", str(config), check=False)
    assert res.code == 2 and "no cron daemon is running" in res.err
    # installed while cron ran, which has stopped since: no next run
    _process(root, 4242, "cron")
    cli("schedule", "install", "--config", str(config))
    shutil.rmtree(root / "proc")
    st = cli("schedule", "status", "--json").json()
    assert st["installed"] is True and st["scheduler_running"] is False and st["next_run"] is None
    assert "next run:     none: no cron daemon is running" in cli("schedule", "status").out


def test_cli_install_refuses_on_this_machine_without_a_running_scheduler(cli, tmp_path, config):
    """The real system: this test machine runs neither systemd as PID 1 nor a cron daemon."""
    from agent.nightly.daemons import cron_daemon, systemd_running

    if systemd_running(Path("/")) or cron_daemon(Path("/")) or not Path("/etc/cron.d").is_dir():
        pytest.skip("this machine runs a scheduler (or has no /etc/cron.d): the refusal cannot be shown here")
    before = sorted(os.listdir("/etc/cron.d"))
    cli.env.update(AGENT_STATE_DIR=str(tmp_path / "state"))
    res = cli("schedule", "install", "--config", str(config), check=False)
    assert res.code == 2 and "no cron daemon is running" in res.err, res.err
    assert sorted(os.listdir("/etc/cron.d")) == before


def _cron_fields(text: str) -> tuple[str, str]:
    m, h = next(line for line in text.splitlines() if line and line[0].isdigit()).split()[:2]
    return f"{int(h):02d}", f"{int(m):02d}"


def test_cli_install_warns_about_a_missing_or_broken_config(cli, root, tmp_path):
    res = cli("schedule", "install", "--config", str(tmp_path / "nope.toml"))
    assert "does not exist yet" in res.err and (root / "etc/cron.d/agent-backup").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text("[notify]\nonn = ['failure']\n")
    res = cli("schedule", "install", "--config", str(bad))
    assert "notify.onn" in res.err and "nightly runs fail until it is fixed" in res.err


def test_cli_install_without_any_scheduler_fails_clearly(cli, root, config):
    shutil.rmtree(root / "etc/cron.d")
    res = cli("schedule", "install", "--config", str(config), check=False)
    assert res.code == 2 and "no cron to use" in res.err and "hint: install cron" in res.err
    res = cli("schedule", "install", "--cron", "--systemd", "--config", str(config), check=False)
    assert res.code == 2 and "exclude each other" in res.err
    res = cli("schedule", "install", "--at", "25:00", "--config", str(config), check=False)
    assert res.code == 2 and "HH:MM" in res.err
    res = cli("schedule", "install", "--user", "--config", str(config), check=False)
    assert res.code == 2 and "no user manager" in res.err
    installed = [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "proc"]
    assert installed == []  # nothing half-installed


@needs_analyze
def test_cli_systemd_offline_and_switching_schedulers(cli, root, config):
    """Where systemd is the init system but not running (an image being prepared), `systemctl --root`
    enables the timer offline; installing the other scheduler removes the first one."""
    (root / "run/systemd/system").mkdir(parents=True)  # auto-detection now picks systemd
    cron = root / "etc/cron.d/agent-backup"
    cron.write_text("# an earlier cron install\n")
    res = cli("schedule", "install", "--config", str(config), "--json")
    done = res.json()
    units = root / "etc/systemd/system"
    assert done["scheduler"] == "systemd" and done["changed"] is True and done["replaced"] == [str(cron)]
    assert done["files"] == [str(units / sch.SERVICE), str(units / sch.TIMER)]
    assert not cron.exists()
    assert os.readlink(units / "timers.target.wants" / sch.TIMER) == f"/etc/systemd/system/{sch.TIMER}"
    _verify(units / sch.SERVICE, units / sch.TIMER)
    assert f"--config {config} run" in (units / sch.SERVICE).read_text()

    status = cli("schedule", "status", "--json").json()
    assert status["installed"] is True and status["scheduler"] == "systemd" and status["at"] == "01:00"
    assert status["randomized_delay_s"] == 900

    res = cli("schedule", "install", "--cron", "--config", str(config))
    assert f"removed {units / sch.TIMER}" in res.err
    assert cron.exists() and not (units / sch.TIMER).exists() and not (units / sch.SERVICE).exists()
    assert not (units / "timers.target.wants" / sch.TIMER).exists()


def test_cli_status_without_and_with_a_state_file(cli, root, config, tmp_path):
    res = cli("schedule", "status")
    assert "installed:    no" in res.out and "last run:     none recorded" in res.out
    st = cli("schedule", "status", "--json").json()
    assert st["installed"] is False and st["next_run"] is None and st["last_run"] is None
    assert st["state_file"] == str(tmp_path / "state/state.json")

    cli("schedule", "install", "--at", "03:00", "--randomized-delay", "0", "--config", str(config))
    now = datetime.now(UTC)
    good = report(ok_source(), started=now - timedelta(days=1))
    record_finish(tmp_path / "state/state.json", good)
    record_finish(tmp_path / "state/state.json", failing_report())
    st = cli("schedule", "status", "--json").json()
    assert st["installed"] is True and st["scheduler"] == "cron" and st["at"] == "03:00"
    nxt = datetime.fromisoformat(st["next_run"])
    assert now < nxt <= now + timedelta(days=1) and nxt.astimezone().strftime("%H:%M") == "03:00"
    last = st["last_run"]
    assert last["last_status"] == "failure" and last["last_exit_code"] == 1
    assert last["last_summary"] == "FAILURE on web1: 1 of 2 sources failed, 1 run error"
    assert datetime.fromisoformat(last["last_success"]) == good.finished

    text = cli("schedule", "status").out
    assert "installed:    yes, cron" in text and "every day at 03:00" in text
    assert "last result:  failure (exit 1)" in text and "FAILURE on web1" in text

    (tmp_path / "state/state.json").write_text("{not json")
    res = cli("schedule", "status")
    assert res.code == 0 and "last run:     unknown: cannot read the run state file" in res.out
    assert json.loads(cli("schedule", "status", "--json").out)["state_error"].startswith("cannot read")
