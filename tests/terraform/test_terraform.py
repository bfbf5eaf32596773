"""terraform/ without a terraform binary: the HCL parses, checkov passes, and the IAM split works.

- Every .tf file parses with python-hcl2, and every var./local. reference and module argument
  resolves (what `terraform validate` would catch first).
- checkov runs on all of terraform/ (modules and examples) with no failed check; every skipped
  check carries its reason in the .tf file. checkov pins many packages, so it lives in its own
  venv in the user's cache, ~/.cache/agent-tests/checkov-VERSION (created on first use, ~70 s, and
  shared by every clone on the machine, so a fresh CI clone does not install it again; override
  the place with AGENT_CHECKOV_VENV, or point AGENT_CHECKOV at an installed checkov binary).
- The backup and maintenance policies are rendered from the aws_iam_policy_document blocks of
  terraform/modules/aws-s3-target/iam.tf, created as IAM users in a private moto_server with IAM
  enforcement on, and the real CLI runs under them (one AWS_PROFILE per command, as docs/terraform.md
  says): the backup credential initialises, backs up and restores, and cannot delete history; the
  maintenance credential forgets and prunes.
- The GCS module's IAM condition is evaluated against the object names the agent writes.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

hcl2 = pytest.importorskip("hcl2", reason="pip install python-hcl2")

from agent.repo import layout  # noqa: E402
from tests.terraform.aws import (  # noqa: E402
    PREFIX,
    error_code,
    load_tf,
    policy_names,
    render_policy,
    substitute,
    tf_module,
    tf_named,
)

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
GCS_MODULE = TERRAFORM / "modules" / "gcs-target"
TF_FILES = sorted(TERRAFORM.rglob("*.tf"))
CHECKOV_VERSION = "3.3.30"
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
CHECKOV_VENV = Path(os.environ.get("AGENT_CHECKOV_VENV", _CACHE / "agent-tests" / f"checkov-{CHECKOV_VERSION}"))

# every top-level key prefix of the repository format except locks/
NON_LOCK_KEYS = [layout.CONFIG, layout.KEYS, layout.DATA, layout.INDEX, layout.SNAPSHOTS, layout.RUNS,
                 layout.DAMAGE, layout.RETENTION, layout.ACKS]


# ---- parsing and references ---------------------------------------------------------------------

def test_the_expected_modules_and_examples_exist():
    dirs = {str(p.parent.relative_to(TERRAFORM)) for p in TF_FILES}
    assert {"modules/aws-s3-target", "modules/gcs-target", "examples/aws", "examples/gcp"} <= dirs
    for d in dirs:
        names = {p.name for p in (TERRAFORM / d).glob("*.tf")}
        assert {"main.tf", "variables.tf", "outputs.tf", "versions.tf"} <= names, d


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_tf_file_parses(path):
    doc = load_tf(path)
    assert doc, f"{path} parsed to nothing"
    assert set(doc) <= {"terraform", "provider", "variable", "locals", "resource", "data", "module", "output"}


@pytest.mark.parametrize("directory", sorted({p.parent for p in TF_FILES}), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_references_resolve(directory):
    text = "\n".join(p.read_text() for p in directory.glob("*.tf"))
    mod = tf_module(directory)
    variables = {name for b in mod.get("variable", []) for name in b}
    locals_ = {name for b in mod.get("locals", []) for name in b}
    used_vars = set(re.findall(r"\bvar\.([A-Za-z0-9_]+)", text))
    used_locals = set(re.findall(r"\blocal\.([A-Za-z0-9_]+)", text))
    assert used_vars <= variables, f"undeclared variables: {sorted(used_vars - variables)}"
    assert used_locals <= locals_, f"undeclared locals: {sorted(used_locals - locals_)}"
    assert variables <= used_vars, f"unused variables: {sorted(variables - used_vars)}"
    for block in mod.get("module", []):
        for name, args in block.items():
            source = (directory / args["source"]).resolve()
            target = tf_module(source)
            declared = {n: body for b in target.get("variable", []) for n, body in b.items()}
            given = set(args) - {"source", "providers", "depends_on", "count", "for_each"}
            assert given <= set(declared), f"module {name}: unknown arguments {sorted(given - set(declared))}"
            required = {n for n, body in declared.items() if "default" not in body}
            assert required <= given, f"module {name}: missing required arguments {sorted(required - given)}"
            outputs = {n for b in target.get("output", []) for n in b}
            used = set(re.findall(rf"\bmodule\.{name}\.([A-Za-z0-9_]+)", text))
            assert used <= outputs, f"module {name}: unknown outputs {sorted(used - outputs)}"


# ---- checkov ------------------------------------------------------------------------------------

def _checkov() -> str:
    explicit = os.environ.get("AGENT_CHECKOV")
    if explicit:
        return explicit
    exe = CHECKOV_VENV / "bin" / "checkov"
    marker = CHECKOV_VENV / f".installed-{CHECKOV_VERSION}"
    if marker.exists() and exe.exists():
        return str(exe)
    # another clone's test run (another worktree, CI) may be installing into the same shared venv
    CHECKOV_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(CHECKOV_VENV.parent / f".{CHECKOV_VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and exe.exists():
            return str(exe)
        return _install_checkov(exe, marker)


def _install_checkov(exe: Path, marker: Path) -> str:
    if CHECKOV_VENV.exists():
        if not (CHECKOV_VENV / "pyvenv.cfg").exists() and any(CHECKOV_VENV.iterdir()):
            pytest.skip(f"{CHECKOV_VENV} exists and is not a venv; refusing to replace it with checkov's")
        shutil.rmtree(CHECKOV_VENV)  # a half-finished install from an interrupted run
    steps = {"python -m venv": [sys.executable, "-m", "venv", str(CHECKOV_VENV)],
             "pip install": [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "-q",
                             "--disable-pip-version-check", f"checkov=={CHECKOV_VERSION}"]}
    for step, argv in steps.items():
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"checkov {CHECKOV_VERSION} could not be installed into {CHECKOV_VENV}: {exc}")
        if proc.returncode != 0:
            tail = [line for line in proc.stderr.splitlines() if not line.startswith("WARNING: Location")][-5:]
            pytest.skip(f"checkov {CHECKOV_VERSION} could not be installed into {CHECKOV_VENV} "
                        f"({step} exited {proc.returncode}): {' | '.join(tail)}")
    marker.write_text("ok\n")
    return str(exe)


def _start_checkov(checkov: str, directory: Path, cwd: Path) -> tuple[Path, subprocess.Popen]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen([checkov, "-d", str(directory), "--framework", "terraform", "--compact", "--skip-download",
                             "-o", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    return directory, proc


def _checkov_results(directory: Path, proc: subprocess.Popen) -> list[dict]:
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"checkov printed no JSON (exit {proc.returncode}):\n{out[-2000:]}\n"
                             f"{err[-2000:]}") from None
    reports = report if isinstance(report, list) else [report]
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports), reports
    results = [r for rep in reports for kind in ("passed_checks", "failed_checks", "skipped_checks")
               for r in rep.get("results", {}).get(kind, [])]
    failed = [f"{r['check_id']} {r['resource']} ({r['file_path']})" for r in results
              if r["check_result"]["result"] == "FAILED"]
    assert not failed, f"checkov failed in {directory}:\n" + "\n".join(failed)
    assert proc.returncode == 0, err[-2000:]
    return results


@pytest.mark.timeout(1200)  # the first run installs checkov (~70 s here, more on a cold pip cache)
def test_checkov_passes_with_justified_skips(tmp_path):
    checkov = _checkov()
    # the modules on their own (variable defaults: no Object Lock, IAM users), then the examples,
    # which call them with Object Lock and a lifecycle transition
    runs = [_start_checkov(checkov, TERRAFORM / d, tmp_path) for d in ("modules", "examples")]  # in parallel
    results = [r for directory, proc in runs for r in _checkov_results(directory, proc)]

    # every skip carries a real reason next to it
    skipped = [r for r in results if r["check_result"]["result"] == "SKIPPED"]
    assert skipped
    for r in skipped:
        reason = r["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 8, f"{r['check_id']} on {r['resource']} is skipped without a reason"

    # and the checks this target is about did run and pass, standalone and through the examples
    passed = {(r["check_id"], r["resource"]) for r in results if r["check_result"]["result"] == "PASSED"}
    for check, resource in [
        ("CKV2_AWS_6", "aws_s3_bucket.this"),                          # public access block
        ("CKV_AWS_21", "aws_s3_bucket.this"),                          # versioning
        ("CKV2_AWS_61", "aws_s3_bucket.this"),                         # lifecycle configuration
        ("CKV_AWS_300", "aws_s3_bucket_lifecycle_configuration.this"),  # abort incomplete multipart uploads
        ("CKV_AWS_111", "aws_iam_policy_document.backup"),             # no unconstrained write access
        ("CKV_AWS_108", "aws_iam_policy_document.maintenance"),        # no data exfiltration wildcard
        ("CKV_AWS_274", "aws_iam_group_policy_attachment.backup[0]"),  # no AdministratorAccess
        ("CKV_GCP_29", "google_storage_bucket.this"),                  # uniform bucket-level access
        ("CKV_GCP_114", "google_storage_bucket.this"),                 # public access prevention
    ]:
        for where in (resource, f"module.backup_target.{resource}"):
            assert (check, where) in passed, f"{check} did not pass on {where}"


# ---- the AWS policies ---------------------------------------------------------------------------

def test_policy_documents_match_the_repository_layout(aws_module):
    backup = render_policy(aws_module, "backup", policy_names("b", "repo/"))
    maintenance = render_policy(aws_module, "maintenance", policy_names("b", "repo/"))
    by_sid = {s["Sid"]: s for s in backup["Statement"]}
    # the backup principal may delete under locks/ and nowhere else in the layout
    assert by_sid["DeleteOwnLockRecords"]["Resource"] == [f"arn:aws:s3:::b/repo/{layout.LOCKS}*"]
    denied = by_sid["DenyDeleteOutsideLocks"]["Resource"]
    assert sorted(denied) == sorted(f"arn:aws:s3:::b/repo/{k}" + ("*" if k.endswith("/") else "")
                                    for k in NON_LOCK_KEYS)
    prefixes = {v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
    assert prefixes == set(NON_LOCK_KEYS) | {layout.LOCKS}, "layout.py gained a prefix: extend the policies"
    history = set(by_sid["DenyHistoryAndBucketChanges"]["Action"])
    assert {"s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention",
            "s3:PutBucket*", "s3:PutLifecycleConfiguration"} <= history
    # only maintenance writes the retention record (a forged one could postpone extensions)
    assert by_sid["DenyWritingRetentionRecords"]["Resource"] == [f"arn:aws:s3:::b/repo/{layout.RETENTION}*"]
    assert by_sid["DenyWritingRetentionRecords"]["Action"] == ["s3:PutObject"]
    # nor an acknowledgement, which would release a suspicious night's protection
    assert by_sid["DenyWritingAcknowledgements"]["Resource"] == [f"arn:aws:s3:::b/repo/{layout.ACKS}*"]
    # the maintenance principal can delete and extend retention, but cannot bypass or shorten it
    m_sid = {s["Sid"]: s for s in maintenance["Statement"]}
    assert "s3:DeleteObject" in m_sid["ReadWriteDeleteRepositoryObjects"]["Action"]
    assert "s3:PutObjectRetention" in m_sid["ExtendRetention"]["Action"]
    assert history - {"s3:DeleteObjectVersion", "s3:PutObjectRetention"} == set(
        m_sid["DenyRetentionAndBucketChanges"]["Action"])
    # the bucket policy repeats the backup principal's denies (a broader identity policy cannot undo them)
    documents = tf_named(aws_module["data"], "aws_iam_policy_document")
    bucket_policy = {s["sid"]: s for s in documents["bucket"]["statement"]}
    assert set(bucket_policy["DenyBackupPrincipalHistoryChanges"]["actions"]) == history
    backup_hcl = {s["sid"]: s for s in documents["backup"]["statement"]}
    assert bucket_policy["DenyBackupPrincipalDeleteOutsideLocks"]["resources"] == \
        backup_hcl["DenyDeleteOutsideLocks"]["resources"]
    assert bucket_policy["DenyBackupPrincipalWritingAcknowledgements"]["resources"] == \
        [f"${{aws_s3_bucket.this.arn}}/${{local.key_prefix}}{layout.ACKS}*"]
    assert bucket_policy["DenyBackupPrincipalWritingRetentionRecords"]["resources"] == \
        backup_hcl["DenyWritingRetentionRecords"]["resources"]
    tls = bucket_policy["DenyInsecureTransport"]
    assert tls["effect"] == "Deny" and tls["condition"][0]["variable"] == "aws:SecureTransport"
    assert tls["condition"][0]["values"] == ["false"]


def test_both_principals_may_find_and_abort_unfinished_uploads(aws_module):
    """check (backup credential) and prune (maintenance) look for uploads killed backups left."""
    for name in ("backup", "maintenance"):
        policy = render_policy(aws_module, name, policy_names("b", "repo/"))
        allowed = {(action, resource) for s in policy["Statement"] if s["Effect"] == "Allow"
                   for action in s["Action"] for resource in s["Resource"]}
        # S3 has no prefix condition for listing uploads: the bucket holds one repository
        assert ("s3:ListBucketMultipartUploads", "arn:aws:s3:::b") in allowed, name
        assert ("s3:ListMultipartUploadParts", "arn:aws:s3:::b/repo/*") in allowed, name
        assert ("s3:AbortMultipartUpload", "arn:aws:s3:::b/repo/*") in allowed, name


def test_a_lifecycle_rule_aborts_unfinished_uploads_nobody_prunes(aws_module):
    lifecycle = tf_named(aws_module["resource"], "aws_s3_bucket_lifecycle_configuration")["this"]
    [rule] = [r for r in lifecycle["rule"] if "abort_incomplete_multipart_upload" in r]
    assert rule["status"] == "Enabled" and rule["filter"] == [{}]  # the whole bucket
    days = "${var.abort_incomplete_multipart_days}"
    assert rule["abort_incomplete_multipart_upload"] == [{"days_after_initiation": days}]
    gcs = tf_module(GCS_MODULE)
    for module in (aws_module, gcs):
        declared = {n: body for b in module["variable"] for n, body in b.items()}
        assert declared["abort_incomplete_multipart_days"]["default"] == 7
    bucket = tf_named(gcs["resource"], "google_storage_bucket")["this"]
    abort = {"action": [{"type": "AbortIncompleteMultipartUpload"}], "condition": [{"age": days}]}
    assert abort in bucket["lifecycle_rule"]


# ---- the split of rights, through the real CLI against moto with IAM enforcement -------------

boto3 = pytest.importorskip("boto3", reason="pip install 'agent-imagebackup[s3]'")
from botocore.exceptions import ClientError  # noqa: E402


def test_backup_principal_backs_up_and_restores_but_cannot_delete_history(account, cli, tmp_path):
    cli.env = {k: v for k, v in cli.env.items() if not k.startswith("AWS_")}
    cli.env.update(AGENT_REPO=account.url)
    backup, maint = account.env("backup"), account.env("maintenance")

    disk = tmp_path / "disk.img"  # one source, backed up on two days (forget groups by host and source)
    day0 = os.urandom(300_000) + bytes(200_000) + os.urandom(100_000)
    disk.write_bytes(day0)
    cli("init", env=backup)
    first = cli("backup", str(disk), "--time", "2024-05-01T12:00:00Z", "--json", env=backup).json()
    assert first["new_chunks"] > 0
    # the backup released its lock: locks/ is empty again, and what is left is a delete marker
    # (under Object Lock the record's version stays until its retention ends, as the module intends)
    assert account.object_keys(layout.LOCKS) == []
    lock_keys = {m["Key"] for m in account.client("admin").list_object_versions(
        Bucket=account.bucket, Prefix=f"{PREFIX}/{layout.LOCKS}").get("DeleteMarkers", [])}
    assert lock_keys, "no lock record was written and deleted"

    day1 = os.urandom(600_000)
    disk.write_bytes(day1)
    second = cli("backup", str(disk), "--time", "2024-05-02T12:00:00Z", "--json", env=backup).json()
    assert account.object_keys(layout.LOCKS) == []
    cli("restore", first["snapshot_id"][:8], "--to", str(tmp_path / "r0.img"), env=backup)
    assert (tmp_path / "r0.img").read_bytes() == day0
    assert cli("check", env=backup).code == 0
    # a run stopped by its window leaves a run record, which the backup credential may create
    assert cli("backup", str(disk), "--max-duration", "0s", check=False, env=backup).code == 3

    # the backup credential cannot delete anything outside locks/, nor a version, nor change the bucket
    s3 = account.client("backup")
    # a check under the backup credential may write a damage record (there is no damage here to find)
    s3.put_object(Bucket=account.bucket, Key=f"{PREFIX}/{layout.damage('0' * 64)}", Body=b"record")
    # nor a retention record, which only `agent retain` (maintenance) writes
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=account.bucket, Key=f"{PREFIX}/{layout.retention('0' * 64)}", Body=b"forged")
    assert error_code(err.value) == "AccessDenied", err.value
    # nor an acknowledgement of a suspicious night, which an admin writes with `agent ack`
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=account.bucket, Key=f"{PREFIX}/{layout.ack('0' * 64)}", Body=b"forged")
    assert error_code(err.value) == "AccessDenied", err.value
    stored = {prefix: account.object_keys(prefix) for prefix in NON_LOCK_KEYS
              if prefix not in (layout.RETENTION, layout.ACKS)}
    assert all(stored.values()), stored
    for prefix, keys in stored.items():
        with pytest.raises(ClientError) as err:
            s3.delete_object(Bucket=account.bucket, Key=keys[0])
        assert error_code(err.value) == "AccessDenied", (prefix, err.value)
    batch = s3.delete_objects(Bucket=account.bucket, Delete={"Objects": [{"Key": k} for k in stored[layout.DATA]]})
    assert [e["Code"] for e in batch.get("Errors", [])] == ["AccessDenied"] * len(stored[layout.DATA])
    snap_key = f"{PREFIX}/{layout.snapshot(first['snapshot_id'])}"
    version = account.versions(snap_key)[0][0]["VersionId"]
    for call in (lambda: s3.delete_object(Bucket=account.bucket, Key=snap_key, VersionId=version),
                 lambda: s3.put_bucket_versioning(Bucket=account.bucket,
                                                  VersioningConfiguration={"Status": "Suspended"}),
                 lambda: s3.put_bucket_lifecycle_configuration(Bucket=account.bucket, LifecycleConfiguration={
                     "Rules": [{"ID": "wipe", "Status": "Enabled", "Filter": {"Prefix": ""},
                                "Expiration": {"Days": 1}}]}),
                 lambda: s3.delete_bucket(Bucket=account.bucket)):
        with pytest.raises(ClientError) as err:
            call()
        assert error_code(err.value) == "AccessDenied", err.value
    assert {p: account.object_keys(p) for p in stored} == stored  # nothing was deleted

    # ... and through the CLI: forgetting a snapshot and removing a key file are refused
    refused = cli("forget", "--keep-last", "1", env=backup, check=False)
    assert refused.code != 0 and "permission denied" in refused.err.lower(), refused.err
    spare_pass = tmp_path / "spare-passphrase"
    spare_pass.write_text("another passphrase for the spare key\n")
    cli("key", "add", "--label", "spare", env={**backup, "AGENT_NEW_PASSPHRASE_FILE": str(spare_pass)})
    spare = [k["id"] for k in cli("key", "list", "--json", env=backup).json()["keys"] if not k["current"]]
    assert len(spare) == 1
    refused = cli("key", "remove", spare[0][:8], env=backup, check=False)
    assert refused.code != 0 and "permission denied" in refused.err.lower(), refused.err
    assert len(cli("snapshots", "--json", env=backup).json()["snapshots"]) == 2
    assert account.object_keys(layout.LOCKS) == [], "a refused command left its lock behind"

    # the maintenance credential forgets and prunes ...
    plan = cli("forget", "--keep-last", "1", "--json", env=maint).json()
    assert plan["remove"] == [first["snapshot_id"]]
    # ... but prune leaves what is still under Object Lock (1 day here), and says until when
    held = cli("prune", "--json", env=maint).json()
    assert held["packs_deleted"] == 0 and held["held_packs"] >= 1 and held["held_until"], held
    assert not held["warnings"], held["warnings"]  # it could read the bucket's Object Lock rule
    after = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    pruned = cli("prune", "--json", "--time", after, env=maint).json()  # once the retention has lapsed
    assert pruned["packs_deleted"] == held["held_packs"] and pruned["held_packs"] == 0
    assert not [w for w in pruned["warnings"] if "not looked for" in w]  # it may list unfinished uploads
    cli("key", "remove", spare[0][:8], env=maint)
    assert [s["id"] for s in cli("snapshots", "--json", env=backup).json()["snapshots"]] == [second["snapshot_id"]]
    assert account.object_keys(layout.LOCKS) == []
    cli("restore", "latest", "--to", str(tmp_path / "r1.img"), env=backup)
    assert (tmp_path / "r1.img").read_bytes() == day1
    checked = cli("check", "--read-data", "--json", env=backup).json()
    assert checked["ok"] and not [w for w in checked["warnings"] if "not looked for" in w]

    # ... yet even its deletes only hide history: the versions are still there under Object Lock
    gone = sorted(set(stored[layout.DATA]) - set(account.object_keys(layout.DATA)))
    assert len(gone) == pruned["packs_deleted"]
    for key in gone + [snap_key]:
        versions, markers = account.versions(key)
        assert versions and markers, key
    # the maintenance principal can delete objects directly too (S3 adds a delete marker)
    account.client("maintenance").delete_object(Bucket=account.bucket, Key=f"{PREFIX}/{layout.CONFIG}")
    assert f"{PREFIX}/{layout.CONFIG}" not in account.object_keys()


def test_backend_multipart_upload_needs_no_more_than_the_backup_policy(account):
    """Large packs go through CreateMultipartUpload/UploadPart/Complete with If-None-Match."""
    from backends.base import PutMode
    from backends.errors import PermissionDenied
    from backends.s3 import S3Backend

    session = boto3.session.Session(profile_name="agent-backup")
    backend = S3Backend(account.bucket, PREFIX, endpoint_url=account.endpoint, region="us-east-1", session=session,
                        multipart_threshold=5 << 20, part_size=5 << 20)
    blob = os.urandom(11 << 20)
    key = layout.pack("ab" * 32)
    backend.put(key, blob, mode=PutMode.CREATE)
    assert backend.get(key, offset=(5 << 20) - 10, length=20) == blob[(5 << 20) - 10:(5 << 20) + 10]
    assert [i.key for i in backend.list(layout.DATA)] == [key]
    with pytest.raises(PermissionDenied):
        backend.delete(key)
    backend.put(layout.lock("cd" * 16), b"lock record", mode=PutMode.OVERWRITE)
    backend.delete(layout.lock("cd" * 16))
    assert [i.key for i in backend.list(layout.LOCKS)] == []
    backend.close()


# ---- GCS: the backup account's delete condition ------------------------------------------------

def test_gcs_backup_account_may_delete_only_lock_records():
    mod = tf_module(GCS_MODULE)
    members = tf_named(mod["resource"], "google_storage_bucket_iam_member")
    roles = {name: body["role"] for name, body in members.items()}
    assert roles["backup_viewer"] == "roles/storage.objectViewer"
    assert roles["backup_creator"] == "roles/storage.objectCreator"
    custom = tf_named(mod["resource"], "google_project_iam_custom_role")["lock_delete"]
    assert custom["permissions"] == ["storage.objects.delete"]
    assert roles["backup_lock_delete"] == "${google_project_iam_custom_role.lock_delete.name}"
    backup_bindings = [n for n, b in members.items() if "backup" in b["member"]]
    assert sorted(backup_bindings) == ["backup_creator", "backup_lock_delete", "backup_viewer"]
    assert all("condition" not in members[n] for n in ("backup_viewer", "backup_creator", "maintenance"))

    # render the CEL condition and apply it to the names the agent writes (backend key = prefix/ + key)
    locals_ = {k: v for b in mod["locals"] for k, v in b.items()}
    condition = members["backup_lock_delete"]["condition"][0]["expression"]
    m = re.fullmatch(r'resource\.name\.startsWith\("(.*)"\)', condition)
    assert m, condition
    names = {"local.locks_resource_prefix": locals_["locks_resource_prefix"]}
    start = substitute(substitute(m.group(1), names), {"google_storage_bucket.this.name": "bkt",
                                                         "local.key_prefix": "repo/"})

    def may_delete(key: str) -> bool:
        return f"projects/_/buckets/bkt/objects/repo/{key}".startswith(start)

    assert may_delete(layout.lock("ab" * 16))
    for key in (layout.CONFIG, layout.key_file("ab" * 16), layout.pack("cd" * 32), layout.index_segment("ef" * 32),
                layout.snapshot("01" * 32)):
        assert not may_delete(key), key
    assert not may_delete("../locks/x")
    assert not f"projects/_/buckets/other/objects/repo/{layout.lock('ab')}".startswith(start)


def test_unfinished_uploads_are_found_by_both_principals_and_aborted(account):
    """What a backup killed mid-upload leaves: either credential lists it, the maintenance one aborts it."""
    from backends.s3 import S3Backend

    key = layout.pack("ef" * 32)
    killed = account.client("backup")
    upload = killed.create_multipart_upload(Bucket=account.bucket, Key=f"{PREFIX}/{key}")["UploadId"]
    killed.upload_part(Bucket=account.bucket, Key=f"{PREFIX}/{key}", UploadId=upload, PartNumber=1,
                       Body=b"the first part of a pack")

    def backend(profile: str) -> S3Backend:
        return S3Backend(account.bucket, PREFIX, endpoint_url=account.endpoint, region="us-east-1",
                         session=boto3.session.Session(profile_name=f"agent-{profile}"))

    for profile in ("backup", "maintenance"):
        [left] = backend(profile).list_leftovers(0)
        assert (left.name, left.size) == (key, 24), profile
    backend("maintenance").remove_leftover(left)
    assert account.client("admin").list_multipart_uploads(Bucket=account.bucket).get("Uploads", []) == []
