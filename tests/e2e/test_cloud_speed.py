"""Over a long round trip a restore keeps enough ranged reads in flight, and a cold cache fetches
the repository's metadata objects several at a time, as seen at a proxy that holds every request
for a while (tests/servers/faultproxy.py in front of moto_server). Not timed: the counts are what
is checked; bench/cloud.py measures the speed."""

from __future__ import annotations

import os
import shutil
import uuid
from urllib.parse import urlsplit

import pytest

from tests.servers.faultproxy import Fault, FaultProxy

boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")

CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
         "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
MIB = 1 << 20


@pytest.fixture
def s3(cli, moto_endpoint):
    bucket = f"speed-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    with FaultProxy(urlsplit(moto_endpoint).port) as proxy:
        cli.env.update(CREDS, AGENT_REPO=f"s3://{bucket}/repo?endpoint={proxy.url}")
        yield proxy, rf" /{bucket}/repo/"


def test_restore_over_a_long_round_trip_keeps_many_reads_in_flight(cli, s3, tmp_path):
    proxy, repo = s3
    img = tmp_path / "disk.img"
    img.write_bytes(os.urandom(48 * MIB))  # incompressible: a dozen 4 MiB ranged reads
    cli("init", "--pack-size", "4")
    cli("backup", str(img))
    shutil.rmtree(tmp_path / "cache")  # a machine with nothing
    proxy.clear()
    proxy.add(Fault("delay", seconds=0.2, match=rf"^GET{repo}data/", times=10**6))
    res = cli("restore", "latest", "--to", str(tmp_path / "restored.img"), "--json").json()
    assert (tmp_path / "restored.img").read_bytes() == img.read_bytes()
    ranged = proxy.most_at_once(rf"^GET{repo}data/")
    # three were in flight before; the round trip is many times a read's CPU time here, so the window
    # grows to what 96 MiB of whole-pack reads allow (six)
    assert ranged >= 5, ranged
    assert res["reads_in_flight"] >= 5


def test_a_cold_cache_fetches_metadata_concurrently(cli, s3, tmp_path):
    proxy, repo = s3
    img = tmp_path / "disk.img"
    cli("init")
    for night in range(6):  # six snapshots, six index segments
        img.write_bytes(os.urandom(2 * MIB))
        cli("backup", str(img), "--time", f"2024-05-0{night + 1}T01:00:00Z")
    shutil.rmtree(tmp_path / "cache")
    proxy.clear()
    proxy.add(Fault("delay", seconds=0.3, match=rf"^GET{repo}(index|snapshots)/", times=10**6))
    cli("restore", "latest", "--to", str(tmp_path / "restored.img"))
    assert (tmp_path / "restored.img").read_bytes() == img.read_bytes()
    assert proxy.most_at_once(rf"^GET{repo}index/") >= 3
    assert proxy.most_at_once(rf"^GET{repo}snapshots/") >= 3
