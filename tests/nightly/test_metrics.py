"""The Prometheus textfile: values, exposition syntax (parsed here by an independent little parser),
atomic replacement, and last-success times that survive failed runs."""

from __future__ import annotations

import os
import re
from datetime import timedelta

import pytest

from agent.nightly.metrics import MetricsConfig, write_textfile
from agent.nightly.report import SourceReport
from tests.nightly.samples import STARTED, failed_source, ok_source, report

T1 = STARTED.timestamp() + 900  # finish time of samples.report()


def parse(text: str) -> dict:
    """{(name, frozenset of (label, value))): float}, checking HELP/TYPE come before each family's samples."""
    assert text.endswith("\n")
    typed, helped, samples = set(), set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind == "gauge"
            typed.add(name)
        else:
            m = re.fullmatch(r'([a-z_]+)(?:\{source="((?:[^"\\]|\\[\\"n])*)"\})? (\S+)', line)
            assert m, f"not a valid sample line: {line!r}"
            assert m[1] in typed and m[1] in helped, f"{m[1]} has no HELP/TYPE before it"
            labels = frozenset()
            if m[2] is not None:
                value = re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], m[2])
                labels = frozenset({("source", value)})
            key = (m[1], labels)
            assert key not in samples, f"duplicate sample {key}"
            samples[key] = float(m[3])
    return samples


def src(name: str) -> frozenset:
    return frozenset({("source", name)})


def test_values_of_a_successful_run(tmp_path):
    path = tmp_path / "agent.prom"
    write_textfile(path, report(ok_source(), ok_source("boot", path="/dev/sda1")))
    m = parse(path.read_text())
    assert m[("agent_last_run_timestamp_seconds", frozenset())] == T1
    assert m[("agent_last_run_success", frozenset())] == 1
    assert m[("agent_last_run_exit_code", frozenset())] == 0
    assert m[("agent_last_success_timestamp_seconds", frozenset())] == T1
    assert m[("agent_run_duration_seconds", frozenset())] == 900
    assert m[("agent_repository_bytes", frozenset())] == 42 << 30
    assert m[("agent_repository_snapshots", frozenset())] == 17
    for name in ("system-disk", "boot"):
        assert m[("agent_source_status", src(name))] == 1
        assert m[("agent_source_last_success_timestamp_seconds", src(name))] == T1
        assert m[("agent_source_read_bytes", src(name))] == 10 << 30
        assert m[("agent_source_new_bytes", src(name))] == 300 << 20
        assert m[("agent_source_uploaded_bytes", src(name))] == 120 << 20
        assert m[("agent_source_duration_seconds", src(name))] == 312.5


def test_label_values_are_escaped(tmp_path):
    path = tmp_path / "agent.prom"
    odd = 'disk "A"\\new\nline'
    write_textfile(path, report(ok_source(odd)))
    text = path.read_text()
    assert 'source="disk \\"A\\"\\\\new\\nline"' in text
    assert parse(text)[("agent_source_status", src(odd))] == 1


def test_unknown_repository_figures_are_left_out(tmp_path):
    rep = report(ok_source())
    rep.repository_bytes = rep.snapshot_count = None
    path = tmp_path / "agent.prom"
    write_textfile(path, rep)
    text = path.read_text()
    assert "agent_repository_bytes" not in text and "agent_repository_snapshots" not in text
    parse(text)


def test_last_success_survives_failed_runs(tmp_path):
    path = tmp_path / "agent.prom"
    write_textfile(path, report(ok_source(), ok_source("data-disk")))

    later = STARTED + timedelta(days=1)
    t2 = later.timestamp() + 900
    write_textfile(path, report(ok_source(), failed_source("data-disk"), started=later))
    m = parse(path.read_text())
    assert m[("agent_last_run_timestamp_seconds", frozenset())] == t2
    assert m[("agent_last_run_success", frozenset())] == 0
    assert m[("agent_last_run_exit_code", frozenset())] == 1
    assert m[("agent_last_success_timestamp_seconds", frozenset())] == T1          # kept
    assert m[("agent_source_last_success_timestamp_seconds", src("system-disk"))] == t2
    assert m[("agent_source_last_success_timestamp_seconds", src("data-disk"))] == T1  # kept
    assert m[("agent_source_status", src("data-disk"))] == 0

    # a second failure in a row still remembers the first night
    latest = later + timedelta(days=1)
    write_textfile(path, report(failed_source("data-disk"), started=latest))
    m = parse(path.read_text())
    assert m[("agent_last_success_timestamp_seconds", frozenset())] == T1
    assert m[("agent_source_last_success_timestamp_seconds", src("data-disk"))] == T1
    # a source no longer configured is dropped rather than aging forever
    assert ("agent_source_status", src("system-disk")) not in m


def test_warning_counts_as_a_run_that_did_not_fail(tmp_path):
    path = tmp_path / "agent.prom"
    skipped = SourceReport("usb", "/dev/sdc", "skipped", error="not present")
    write_textfile(path, report(ok_source(), skipped))
    m = parse(path.read_text())
    assert m[("agent_last_run_success", frozenset())] == 1 and m[("agent_last_run_exit_code", frozenset())] == 3
    assert m[("agent_last_success_timestamp_seconds", frozenset())] == T1
    assert m[("agent_source_status", src("usb"))] == 0
    assert ("agent_source_last_success_timestamp_seconds", src("usb")) not in m  # never succeeded


def test_never_succeeded_and_damaged_previous_file(tmp_path):
    path = tmp_path / "agent.prom"
    path.write_text("garbage {{{\nagent_last_success_timestamp_seconds not-a-number\n")
    write_textfile(path, report(failed_source()))
    m = parse(path.read_text())
    assert ("agent_last_success_timestamp_seconds", frozenset()) not in m
    assert m[("agent_last_run_success", frozenset())] == 0


def test_explicit_previous_text_wins_over_the_file(tmp_path):
    path = tmp_path / "agent.prom"
    previous = ('agent_last_success_timestamp_seconds 1234.5\n'
                'agent_source_last_success_timestamp_seconds{source="data-disk"} 99\n')
    write_textfile(path, report(failed_source()), previous=previous)
    m = parse(path.read_text())
    assert m[("agent_last_success_timestamp_seconds", frozenset())] == 1234.5
    assert m[("agent_source_last_success_timestamp_seconds", src("data-disk"))] == 99


def test_replaced_atomically_with_mode_0644(tmp_path):
    path = tmp_path / "agent.prom"
    write_textfile(path, report(ok_source()))
    old_inode = path.stat().st_ino
    with open(path) as reader:  # a scrape in progress keeps reading the complete old file
        old_text = path.read_text()
        write_textfile(path, report(failed_source(), started=STARTED + timedelta(days=1)))
        assert reader.read() == old_text
    assert path.stat().st_ino != old_inode
    assert (path.stat().st_mode & 0o777) == 0o644
    assert os.listdir(tmp_path) == ["agent.prom"]  # no temporary files left


def test_unwritable_directory_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        write_textfile(tmp_path / "missing" / "agent.prom", report(ok_source()))
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "agent.prom").write_text("agent_last_success_timestamp_seconds 5\n")
    ro.chmod(0o555)
    try:
        if os.geteuid() != 0:  # root writes anyway
            with pytest.raises(PermissionError):
                write_textfile(ro / "agent.prom", report(ok_source()))
            assert os.listdir(ro) == ["agent.prom"]
    finally:
        ro.chmod(0o755)


def test_config_model():
    assert MetricsConfig().textfile is None
    with pytest.raises(ValueError, match="text_file"):
        MetricsConfig.model_validate({"text_file": "/x"})


def test_verify_metrics_and_their_carry_over_while_not_due(tmp_path):
    from agent.nightly.metrics import parse_samples
    from agent.nightly.report import VerifyReport

    path = tmp_path / "agent.prom"
    parts = [{"number": 1, "filesystem": "vfat", "status": "clean"},
             {"number": 2, "filesystem": "ext4", "status": "damaged"},
             {"number": 3, "filesystem": None, "status": "not checked"}]
    write_textfile(path, report(ok_source(verify=VerifyReport("damaged", fsck=True, damaged_bytes=0,
                                                              partitions=parts, duration_s=4.5))))
    text = path.read_text()
    assert 'agent_verify_status{source="system-disk"} 0' in text
    samples = parse_samples(text)  # prometheus_client writes labels in name order
    assert samples[("agent_verify_partition_clean", (("filesystem", "vfat"), ("partition", "1"),
                                                     ("source", "system-disk")))] == 1
    assert samples[("agent_verify_partition_clean", (("filesystem", "ext4"), ("partition", "2"),
                                                     ("source", "system-disk")))] == 0
    assert 'partition="3"' not in text and "agent_verify_last_success_timestamp_seconds" not in text
    assert "# TYPE agent_verify_status gauge" in text
    first = parse_samples(text)
    # the next run does not verify: the last verify's samples stay, the backup's are new
    write_textfile(path, report(ok_source(), finished_after_s=86400))
    later = parse_samples(path.read_text())
    assert {k: v for k, v in later.items() if k[0].startswith("agent_verify_")} == \
        {k: v for k, v in first.items() if k[0].startswith("agent_verify_")}
    # a clean verify sets the last success
    write_textfile(path, report(ok_source(verify=VerifyReport("clean")), finished_after_s=2 * 86400))
    last = parse_samples(path.read_text())
    assert last[("agent_verify_status", (("source", "system-disk"),))] == 1
    assert last[("agent_verify_last_success_timestamp_seconds", (("source", "system-disk"),))] == \
        (STARTED + timedelta(seconds=2 * 86400)).timestamp()
    assert ("agent_verify_partition_clean", (("filesystem", "ext4"), ("partition", "2"),
                                             ("source", "system-disk"))) not in last
