"""Object Lock used properly, against moto with IAM enforcement and the module's policies
(tests/terraform/aws.py): `agent retain` keeps every object of a kept snapshot locked past the
original lock period, with one PutObjectRetention per object per (period - margin), counted in
the server's own request log; prune leaves what is locked; the backup principal can neither
shorten retention nor delete.

Two clocks: moto enforces retention against its real clock, and the bucket's default rule gives
every upload real time + 1 day (moto's shortest rule). The agent's clock is moved with `--time`
to a day and an hour later, past that original period, and on by whole days for later "nights".
Every date the agent sets is its now + period, later than both clocks, so moto accepts it as an
extension; dates are read back from moto's HeadObject.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from agent.repo import layout
from tests.terraform.aws import PREFIX, error_code

boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
from botocore.exceptions import ClientError  # noqa: E402


def _retained_until(account, key: str) -> datetime:
    """From HeadObject's Object Lock headers (moto 5.2 does not answer GetObjectRetention)."""
    return account.client("admin").head_object(Bucket=account.bucket, Key=key)["ObjectLockRetainUntilDate"]


def test_retain_keeps_kept_snapshots_locked_by_generation_and_prune_leaves_locked_objects(account, cli, tmp_path):
    cli.env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
    cli.env.update(AGENT_REPO=account.url)
    backup, maint = account.env("backup"), account.env("maintenance")
    started = datetime.now(UTC)

    disk = tmp_path / "disk.img"
    cli("init", env=backup)
    packs_of_night: list[set[str]] = []
    for night in range(3):  # new data each night: each snapshot has packs of its own
        before = set(account.object_keys(layout.DATA))
        disk.write_bytes(os.urandom(300_000) + bytes(100_000))
        cli("backup", str(disk), "--time", f"2024-05-0{night + 1}T12:00:00Z", env=backup)
        packs_of_night.append(set(account.object_keys(layout.DATA)) - before)
    cli("forget", "--keep-last", "2", env=maint)  # night 0's snapshot goes; its packs are unused
    dead = packs_of_night[0]
    live = set(account.object_keys()) - dead - set(account.object_keys(layout.LOCKS))
    assert dead and packs_of_night[1] and packs_of_night[2] <= live

    # the backup principal may neither shorten nor otherwise change retention, nor delete
    s3 = account.client("backup")
    some_pack = sorted(packs_of_night[2])[0]
    for until in (started + timedelta(hours=1), started + timedelta(days=30)):
        with pytest.raises(ClientError) as err:
            s3.put_object_retention(Bucket=account.bucket, Key=some_pack,
                                    Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
        assert error_code(err.value) == "AccessDenied", err.value
    with pytest.raises(ClientError) as err:
        s3.delete_object(Bucket=account.bucket, Key=some_pack)
    assert error_code(err.value) == "AccessDenied", err.value
    refused = cli("retain", env=backup, check=False)
    assert refused.code == 17 and "permission denied" in refused.err.lower(), refused.err
    assert "Traceback" not in refused.err
    assert {status for _, status in account.requests("PUT", "retention")} == {403}
    denied = len(account.requests("PUT", "retention"))

    # night 0 on the agent's clock: a day and an hour on, the original retention (1 day) has lapsed
    t0 = started + timedelta(days=1, hours=1)
    assert all(_retained_until(account, k) < t0 for k in live | dead)
    per_night = []
    for night in range(3):  # to now + 3 days when within 1 day of lapsing: every 2 nights
        now = t0 + timedelta(days=night)
        res = cli("retain", "--time", now.isoformat(), "--period", "3d", "--margin", "1d", "--json", env=maint).json()
        seen = len(account.requests("PUT", "retention")) - denied - sum(per_night)
        assert seen == res["extended"] == res["requests"].get("retention", 0), res
        assert res["live_objects"] == len(live)
        per_night.append(seen)
        # every object of a kept snapshot is retained beyond now; unused packs are left to lapse
        for key in live:
            assert _retained_until(account, key) > now, key
        for key in dead:
            assert _retained_until(account, key) < t0, key
    assert per_night == [len(live), 0, len(live)]
    # bounded as docs/ransomware.md says: one request per object per (period - margin) = 2 nights
    assert sum(per_night) <= len(live) * -(-len(per_night) // 2)

    # prune (clock: night 2) deletes the unused packs, whose retention lapsed, and leaves the index
    # segments it replaces: retain extended those, so deleting them must wait
    last = t0 + timedelta(days=2)
    pruned = cli("prune", "--time", last.isoformat(), "--json", env=maint).json()
    assert pruned["packs_deleted"] == len(dead) and pruned["held_packs"] == 0
    segments = {k for k in live if layout.INDEX in k}
    assert pruned["held_segments"] == len(segments) == 3
    assert datetime.fromisoformat(pruned["held_until"]) > last
    assert account.requests("DELETE", path=f"/{PREFIX}/{layout.INDEX}") == []  # not even tried
    assert {p for p, status in account.requests("DELETE", path=f"/{PREFIX}/{layout.DATA}") if status == 204} == \
        {f"/{account.bucket}/{key}" for key in dead}
    assert set(account.object_keys(layout.INDEX)) >= segments
    out = cli("prune", "--time", last.isoformat(), env=maint).out
    assert "waiting for Object Lock retention to lapse" in out and "3 replaced index segment(s)" in out
