"""An unacknowledged suspicious night keeps itself and the snapshot before it from `forget`, whatever
the policy and whoever planned it; only an authentic acknowledgement (sealed with the key) ends that."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from agent.errors import AgentError, UsageError
from agent.maintenance.forget import ForgetResult, forget, plan_forget, protected_in
from agent.maintenance.protection import acknowledge, suspects
from agent.maintenance.retention import Decision, Policy
from agent.repo.snapshots import Snapshot

NOTE = {"new_bytes": 900, "usual_bytes": 10, "nights": 4, "stored_ratio": 0.99, "factor": 90.0}


def _save(repo, day: int, source: str = "/dev/sda", suspicious: dict | None = None) -> Snapshot:
    snap = Snapshot(time=datetime(2024, 3, day, 1, tzinfo=UTC), host="h", source={"path": source}, size=0,
                    digest=repo.chunk_list_writer().digest(), chunk_list=[], parent=None if day == 1 else "p",
                    suspicious=suspicious)
    repo.save_snapshot(snap)
    return snap


@pytest.fixture
def nights(repo):
    """Five ordinary nights of /dev/sda, a suspicious sixth, a seventh; and another source's nights."""
    snaps = [_save(repo, d, suspicious=NOTE if d == 6 else None) for d in range(1, 8)]
    others = [_save(repo, d, source="/dev/sdb") for d in range(1, 4)]
    return snaps, others


def test_forget_keeps_the_suspicious_night_and_the_one_before_until_acknowledged(repo, nights):
    snaps, others = nights
    listed = repo.list_snapshots()
    assert [s.suspicious for s in listed if s.id == snaps[5].id] == [NOTE]  # the flag survives the manifest
    plan = plan_forget(listed, Policy(last=1), protected=protected_in(repo, listed))
    kept = {s.id for s in plan.keep}
    assert kept == {snaps[6].id, snaps[5].id, snaps[4].id, others[2].id}
    reasons = {d.snapshot.id: d.reasons for ds in plan.groups.values() for d in ds}
    assert reasons[snaps[4].id] == [f"last before suspicious {snaps[5].id[:8]}, not acknowledged"]
    forget(repo, plan)

    assert acknowledge(repo, snaps[5], "a restore test") is not None
    assert acknowledge(repo, snaps[5]) is None  # once is enough
    listed = repo.list_snapshots()
    plan = plan_forget(listed, Policy(last=1), protected=protected_in(repo, listed))
    assert {s.id for s in plan.keep} == {snaps[6].id, others[2].id}


def test_forget_refuses_a_plan_made_without_the_protection(repo, nights):
    snaps, _ = nights
    plan = ForgetResult({("h", "/dev/sda"): [Decision(snaps[6], True, ["last"]),
                                              *(Decision(s, False, []) for s in snaps[:6])]})
    with pytest.raises(AgentError, match=f"refusing to forget snapshot {snaps[4].id[:8]}"):
        forget(repo, plan)
    assert len(repo.list_snapshots()) == 10  # nothing was deleted


def test_an_acknowledgement_that_does_not_authenticate_counts_as_none(repo, nights, tmp_path):
    snaps, _ = nights
    acks = tmp_path / "repo" / "acks"
    acks.mkdir(exist_ok=True)
    forged = b'{"version":1,"snapshot":"%s"}' % snaps[5].id.encode()  # plain JSON: no key, no seal
    (acks / hashlib.sha256(forged).hexdigest()).write_bytes(forged)
    damaged: list[tuple[str, str]] = []
    assert repo.list_acks(damaged) == [] and "failed authentication" in damaged[0][1]
    assert [s.acknowledged for s in suspects(repo.list_snapshots(), set())] == [False]
    assert snaps[4].id in protected_in(repo, repo.list_snapshots())


def test_only_a_flagged_night_can_be_acknowledged(repo, nights):
    snaps, _ = nights
    with pytest.raises(UsageError, match="was not flagged suspicious"):
        acknowledge(repo, snaps[2])
    assert repo.list_acks() == []
