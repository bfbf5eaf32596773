"""The AWS side of tests/terraform: the module's policies rendered from iam.tf, and `Account`, a
moto_server with IAM enforcement on, a bucket shaped like the module's (Object Lock, GOVERNANCE)
and three users (backup, maintenance, admin) holding those policies. Loaded as a pytest plugin
(tests/conftest.py) for the `aws_module` and `account` fixtures.

moto authorizes Object Lock requests under AWS's action names here (tests/servers/moto_lock_actions.py)
and keeps its request log in `Account.log`, so tests can count requests the server saw.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest

from tests.servers.moto import moto_api, start_moto

ROOT = Path(__file__).resolve().parents[2]
AWS_MODULE = ROOT / "terraform" / "modules" / "aws-s3-target"


def load_tf(path: Path) -> dict:
    hcl2 = pytest.importorskip("hcl2", reason="pip install python-hcl2")
    opts = hcl2.SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
    with open(path) as f:
        return hcl2.load(f, serialization_options=opts)


def tf_module(path: Path) -> dict[str, list]:
    """All top-level blocks of a directory's .tf files, by block type."""
    out: dict[str, list] = {}
    for tf in sorted(path.glob("*.tf")):
        for kind, blocks in load_tf(tf).items():
            out.setdefault(kind, []).extend(blocks)
    return out


def tf_named(blocks: list[dict], kind: str) -> dict[str, dict]:
    """{'name': body} of e.g. data "aws_iam_policy_document" "name" blocks."""
    return {name: body for b in blocks if kind in b for name, body in b[kind].items()}


# ---- rendering the AWS policies -----------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")


def substitute(value: str, names: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        expr = m.group(1).strip()
        if expr not in names:
            raise AssertionError(f"cannot render {value!r}: unknown expression {expr!r}")
        return names[expr]

    return _INTERPOLATION.sub(one, value)


def render_policy(module: dict, name: str, names: dict[str, str]) -> dict:
    """IAM JSON of data "aws_iam_policy_document" NAME, as the provider would build it."""
    doc = tf_named(module["data"], "aws_iam_policy_document")[name]
    statements = []
    for st in doc["statement"]:
        unsupported = set(st) - {"sid", "effect", "actions", "resources", "condition"}
        assert not unsupported, f"{name}.{st.get('sid')}: the renderer does not handle {sorted(unsupported)}"
        out = {"Sid": st["sid"], "Effect": st.get("effect", "Allow"), "Action": list(st["actions"]),
               "Resource": [substitute(r, names) for r in st["resources"]]}
        for cond in st.get("condition", []):
            out.setdefault("Condition", {}).setdefault(cond["test"], {})[cond["variable"]] = [
                substitute(v, names) for v in cond["values"]]
        statements.append(out)
    return {"Version": "2012-10-17", "Statement": statements}


@pytest.fixture(scope="module")
def aws_module() -> dict:
    return tf_module(AWS_MODULE)


def policy_names(bucket: str, prefix: str) -> dict[str, str]:
    return {"aws_s3_bucket.this.arn": f"arn:aws:s3:::{bucket}", "local.key_prefix": prefix}


# ---- moto with IAM enforcement ---------------------------------------------------------------------

PREFIX = "repo"
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


class Account:
    """moto_server with IAM enforcement on, a bucket shaped like the module's, and three users."""

    def __init__(self, aws_module: dict, tmp: Path) -> None:
        self.log = tmp / "moto.log"
        self.server = start_moto(lock_actions=True, log_path=self.log)
        try:
            self._setup(aws_module, tmp)
        except BaseException:
            self.server.stop()
            raise

    def _setup(self, aws_module: dict, tmp: Path) -> None:
        boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
        from botocore.config import Config

        self.endpoint = self.server.url
        self.bucket = f"agent-tf-{uuid.uuid4().hex[:12]}"
        setup = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                      region_name="us-east-1")
        s3 = setup.client("s3", endpoint_url=self.endpoint, config=Config(s3={"addressing_style": "path"}))
        # the example's bucket: Object Lock (which turns versioning on), GOVERNANCE default retention
        s3.create_bucket(Bucket=self.bucket, ObjectLockEnabledForBucket=True)
        s3.put_object_lock_configuration(Bucket=self.bucket, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
        iam = setup.client("iam", endpoint_url=self.endpoint)
        names = policy_names(self.bucket, f"{PREFIX}/")
        self.policies = {"backup": render_policy(aws_module, "backup", names),
                         "maintenance": render_policy(aws_module, "maintenance", names),
                         "admin": ADMIN_POLICY}
        lines = []
        for who, doc in self.policies.items():
            iam.create_user(UserName=f"agent-{who}")
            arn = iam.create_policy(PolicyName=f"agent-{who}", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=f"agent-{who}", PolicyArn=arn)
            key = iam.create_access_key(UserName=f"agent-{who}")["AccessKey"]
            lines += [f"[agent-{who}]", f"aws_access_key_id = {key['AccessKeyId']}",
                      f"aws_secret_access_key = {key['SecretAccessKey']}", ""]
        self.aws_dir = tmp / "aws"
        self.aws_dir.mkdir()
        (self.aws_dir / "credentials").write_text("\n".join(lines))
        (self.aws_dir / "config").write_text("[default]\nregion = us-east-1\n")
        moto_api(self.endpoint, "/moto-api/reset-auth", b"0")  # from now on every request is checked
        self.url = f"s3://{self.bucket}/{PREFIX}?endpoint={self.endpoint}&region=us-east-1"
        self._clients: dict[str, object] = {}

    def env(self, profile: str) -> dict[str, str]:
        return {"AWS_SHARED_CREDENTIALS_FILE": str(self.aws_dir / "credentials"),
                "AWS_CONFIG_FILE": str(self.aws_dir / "config"), "AWS_PROFILE": f"agent-{profile}",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self, profile: str):
        if profile not in self._clients:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(profile_name=f"agent-{profile}")
            self._clients[profile] = session.client("s3", endpoint_url=self.endpoint, config=Config(
                s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}))
        return self._clients[profile]

    def object_keys(self, under: str = "") -> list[str]:
        pages = self.client("admin").get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"{PREFIX}/{under}")
        return [o["Key"] for p in pages for o in p.get("Contents", ())]

    def versions(self, key: str) -> tuple[list[dict], list[dict]]:
        reply = self.client("admin").list_object_versions(Bucket=self.bucket, Prefix=key)
        return ([v for v in reply.get("Versions", []) if v["Key"] == key],
                [m for m in reply.get("DeleteMarkers", []) if m["Key"] == key])

    def requests(self, method: str, query: str | None = None, *, path: str = "") -> list[tuple[str, int]]:
        """(path, status) of the `method` requests in the server's request log, whichever client
        sent them: those whose query has `query` (e.g. "retention"), whose path contains `path`."""
        line = re.compile(r'"([A-Z]+) (/[^ ?]*)(?:\?([^ ]*))? HTTP/[0-9.]+" (\d{3})')
        out = []
        for m in line.finditer(self.log.read_text(errors="replace")):
            params = {p.split("=", 1)[0] for p in (m.group(3) or "").split("&")}
            if m.group(1) == method and path in m.group(2) and (query is None or query in params):
                out.append((m.group(2), int(m.group(4))))
        return out

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def account(aws_module, tmp_path, monkeypatch):
    for var in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(var)  # only the credentials file below counts, in this process and the CLI's
    acc = Account(aws_module, tmp_path)
    for var, value in acc.env("admin").items():
        monkeypatch.setenv(var, value)
    try:
        yield acc
    finally:
        acc.stop()


def error_code(exc) -> str:
    return exc.response.get("Error", {}).get("Code", "")
