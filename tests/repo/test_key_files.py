"""Key files through the command line: a damaged one is reported as damaged, by name, rather than
taken for a wrong passphrase; a hostile one (empty salt, an Argon2id cost past the bounds) is
refused by name before any work is spent on it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

SECOND = "a second passphrase for the same repository\n"


def _keys(cli) -> list[Path]:
    return sorted((cli.repo / "keys").iterdir())


def _flip_inside_wrapped_key(path: Path) -> None:
    """One byte of the sealed master key changed to another base64 digit: still a well-formed file."""
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"data": "') + len(b'"data": "') + 20
    raw[at] = ord("B") if raw[at] != ord("B") else ord("C")
    path.write_bytes(bytes(raw))


def _rewrite(path: Path, **fields) -> None:
    """Change fields the way a hostile writer would: the integrity digest (docs/format.md) made to match."""
    doc = json.loads(path.read_text())
    doc.update(fields)
    if "digest" in doc:
        rest = {k: v for k, v in doc.items() if k != "digest"}
        canonical = json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()
        doc["digest"] = "sha256:" + hashlib.sha256(canonical).hexdigest()
    path.write_text(json.dumps(doc, indent=1))


def _clean(res) -> None:
    assert "Traceback" not in res.err and "internal error" not in res.err


def test_a_flipped_byte_in_the_wrapped_key_is_damage_not_a_wrong_passphrase(cli):
    cli("init")
    (key,) = _keys(cli)
    _flip_inside_wrapped_key(key)
    res = cli("snapshots", check=False)
    _clean(res)
    assert res.code == 14, res
    assert f"key file {key.name[:8]} is damaged" in res.err
    assert "wrong passphrase" not in res.err
    assert "another key" in res.err and "from a copy" in res.err


def test_another_key_still_opens_when_one_is_damaged(cli, tmp_path):
    cli("init")
    second = tmp_path / "second"
    second.write_text(SECOND)
    cli("key", "add", "--new-passphrase-file", str(second))
    first_id = next(k["id"] for k in cli("key", "list", "--json").json()["keys"] if k["label"] == "initial key")
    _flip_inside_wrapped_key(cli.repo / "keys" / first_id)

    assert cli("snapshots", env={"AGENT_PASSPHRASE_FILE": str(second)}).code == 0
    res = cli("snapshots", check=False)  # the damaged key's own passphrase
    _clean(res)
    assert res.code == 14 and f"key file {first_id[:8]} is damaged" in res.err
    check = cli("check", check=False, env={"AGENT_PASSPHRASE_FILE": str(second)})
    assert check.code == 14 and f"key file {first_id[:8]} is damaged" in check.out


def test_key_list_marks_damaged_and_stray_key_files_instead_of_failing(cli):
    cli("init")
    (key,) = _keys(cli)
    (cli.repo / "keys" / ("e" * 32)).write_text("not a key file")
    res = cli("key", "list", "--json")
    listed = {k["id"]: k for k in res.json()["keys"]}
    assert listed[key.name]["current"] and listed[key.name]["damaged"] is None
    assert "malformed" in listed["e" * 32]["damaged"]
    table = cli("key", "list")
    assert "damaged" in table.out and "e" * 8 in table.out


def test_a_key_file_with_an_empty_salt_is_refused_by_name(cli):
    cli("init")
    (key,) = _keys(cli)
    _rewrite(key, salt="")
    res = cli("snapshots", check=False)
    _clean(res)
    assert res.code == 12, res
    assert key.name[:8] in res.err and "salt" in res.err


@pytest.mark.parametrize("kdf,asks", [
    ({"time_cost": 17}, "17 passes (at most 16)"),
    ({"parallelism": 17, "memory_kib": 17 * 8}, "17 lanes (at most 16)"),
    ({"memory_kib": 4 * 1024 * 1024 + 8}, "4194312 KiB of memory (at most"),
])
def test_a_key_file_asking_for_too_much_work_is_refused_by_name(cli, kdf, asks):
    cli("init")
    (key,) = _keys(cli)
    doc = json.loads(key.read_text())
    _rewrite(key, kdf={**doc["kdf"], **kdf})
    res = cli("snapshots", check=False)
    _clean(res)
    assert res.code == 12, res
    assert key.name[:8] in res.err and asks in res.err


@pytest.mark.parametrize("spec", ["17,65536,4", "6,65536,17", "6,4194312,4"])
def test_init_and_key_add_cannot_write_a_key_file_the_bounds_refuse(cli, tmp_path, spec):
    res = cli("init", check=False, env={"AGENT_KDF": spec})
    _clean(res)
    assert res.code == 2 and "AGENT_KDF" in res.err
    assert not (cli.repo / "keys").exists() or not _keys(cli)

    cli("init")
    second = tmp_path / "second"
    second.write_text(SECOND)
    res = cli("key", "add", "--new-passphrase-file", str(second), check=False, env={"AGENT_KDF": spec})
    assert res.code == 2 and "AGENT_KDF" in res.err
    assert len(_keys(cli)) == 1
