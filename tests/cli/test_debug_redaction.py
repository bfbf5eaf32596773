"""`agent --debug` against S3 (moto) logs the SDK's requests, but never a credential: not the secret
key, not the access key id, not the session token, not a signature."""

from __future__ import annotations

import re
import uuid

import pytest

ACCESS_KEY_ID = "AKIAREDACTIONTEST001"
SECRET_KEY = "redaction-test-secret/0123456789+abcdefABCDEF"
SESSION_TOKEN = "redaction-test-session-token-0123456789"


@pytest.fixture
def s3_repo(moto_endpoint) -> dict[str, str]:
    boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
    bucket = f"debug-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return {"AGENT_REPO": f"s3://{bucket}/repo?endpoint={moto_endpoint}&region=us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_CONFIG_FILE": "/nonexistent",
            "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}


def test_debug_output_over_s3_holds_no_credential(cli, s3_repo):
    for args in (("init",), ("snapshots",)):
        res = cli("--debug", *args, env=s3_repo)
        err = res.err
        assert "botocore" in err and "Sending http request" in err  # the debug output is there
        for secret in (ACCESS_KEY_ID, SECRET_KEY, SESSION_TOKEN):
            assert secret not in err, f"{args}: {secret} leaked"
        assert not re.search(r"Signature=[0-9a-f]{8}", err), args
        assert not re.search(r"Signature:\s*[0-9a-f]{64}", err), args
        assert "<redacted>" in err


@pytest.mark.parametrize("line,secret", [
    ("GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAXX%2F20240101%2Fus-east-1&X-Amz-Signature="
     "0123abcd0123abcd&X-Amz-Security-Token=tok-123456", ("AKIAXX", "0123abcd", "tok-123456")),
    ("{'aws_access_key_id': 'AKIAYY', 'aws_secret_access_key': 'sekrit/+key'}", ("AKIAYY", "sekrit")),
    ("headers={'Authorization': 'Bearer ya29.a0Af-token_value'}", ("ya29",)),
    ('{"access_token": "ya29.other", "refresh_token": "1//rt"}', ("ya29", "1//rt")),
    ("x-amz-security-token:tok-abcdef\n", ("tok-abcdef",)),
])
def test_redact_cuts_credential_shaped_values(line, secret):
    from agent.cli.redaction import redact

    out = redact(line)
    assert "<redacted>" in out and not any(s in out for s in secret), out


def test_redact_cuts_secret_environment_values_wherever_they_appear(monkeypatch):
    from agent.cli.redaction import RedactSecrets, secret_values

    monkeypatch.setenv("MY_SERVICE_PASSWORD", "correct-horse")
    monkeypatch.setenv("MY_SERVICE_HOST", "nas.local")
    import logging

    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "login %s with %s", ("nas.local", "correct-horse"),
                               None)
    RedactSecrets(secret_values()).filter(record)
    assert record.getMessage() == "login nas.local with <redacted>"
