"""A repository on S3 for benchmarks: moto_server with a bucket, behind the fault proxy of the tests
(which can add a delay to every request, like a cloud round trip), and the environment that points
the agent at it. Shared by the browse and status benchmarks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.servers.faultproxy import FaultProxy

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


@dataclass
class S3Repo:
    url: str  # the repository URL, through the proxy
    env: dict[str, str]  # the caller's environment without AGENT_*, plus credentials, AGENT_REPO and the passphrase
    proxy: FaultProxy

    def delay_every_request(self, seconds: float) -> None:
        from tests.servers.faultproxy import Fault

        self.proxy.add(Fault("delay", seconds=seconds, times=10**9))


@contextmanager
def s3_repository(work: Path, passphrase: str = "bench passphrase\n") -> Iterator[S3Repo]:
    """A fresh bucket on a moto_server of its own, for the length of the block; the passphrase is
    written to WORK/pw."""
    import boto3

    from tests.servers.faultproxy import FaultProxy
    from tests.servers.moto import start_moto

    (work / "pw").write_text(passphrase)
    server = start_moto()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with FaultProxy(port) as proxy:
            boto3.client("s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket="bench")
            url = f"s3://bench/repo?endpoint={proxy.url}&region=us-east-1"
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}, **CREDENTIALS,
                   "AGENT_REPO": url, "AGENT_PASSPHRASE_FILE": str(work / "pw"), "AGENT_KDF": "1,8,1"}
            yield S3Repo(url, env, proxy)
    finally:
        server.stop()
