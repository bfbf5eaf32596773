"""JSON Schemas of every command's `--json` lines, written to docs/schemas/ by `make json-schemas`.

One compact table per command keeps the contract next to the code that emits it; the files are
generated from it (and tests/cli/test_json_schemas.py checks both the files and real output against
it). Never imported by a command: only the generator and the tests load it.

Types: str, int, num, bool, obj, arr, time (RFC 3339 UTC, docs/json.md); a trailing `?` allows
null; a dict is an object with those fields, a one-element list an array of such items. Every
field listed is required; objects may carry more (new fields are not a breaking change)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Spec = dict[str, Any]
BASE_URL = "https://agent.invalid/schemas/"  # $id namespace only: never fetched
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"

# events any command may print before its result (progress only from long operations)
COMMON: dict[str, Spec] = {
    "started": {"operation": "str", "total_bytes": "int?"},
    "progress": {"operation": "str", "done_bytes": "int", "total_bytes": "int?", "bytes_per_s": "int",
                 "eta_s": "int?"},
    "warning": {"message": "str"},
    "error": {"code": "int", "kind": "str", "message": "str", "hint": "str?"},
}

_SNAPSHOT = {"id": "str", "short_id": "str", "time": "time", "host": "str", "source": "str", "size": "int",
             "tags": ["str"], "parent": "str?", "new_bytes": "int?", "stored_bytes": "int?"}
_RUN_RECORD = {"id": "str", "short_id": "str", "status": "str", "host": "str", "source": "str", "started": "time",
               "stopped": "time"}
_REPAIR = {"repair": "str", "dry_run": "bool", "actions": ["str"], "warnings": ["str"], "counts": "obj"}
_ENTRY = {"path": "str", "name": "str", "type": "str", "size": "int", "mode": "str", "uid": "int", "gid": "int",
          "mtime": "time", "target": "str?"}
_RUN_SOURCE = {"name": "str", "path": "str", "status": "str", "snapshot_id": "str?", "error": "str?",
               "hint": "str?", "read_bytes": "int", "new_bytes": "int", "uploaded_bytes": "int", "duration_s": "num",
               "warnings": ["str"]}

# each command's own events: its result (named after the command) and any others it prints
COMMANDS: dict[str, dict[str, Spec | list[Spec]]] = {
    "init": {"init": {"repository": "str", "location": "str", "pack_size": "int"}},
    "backup": {"backup": {
        "complete": "bool", "stopped": "str?", "snapshot_id": "str?", "source": "str", "source_bytes": "int",
        "read_bytes": "int", "zero_bytes": "int", "new_bytes": "int", "stored_bytes": "int",
        "uploaded_bytes": "int", "chunks": "int", "new_chunks": "int", "duration_s": "num",
        "recovered_packs": "int", "resumed_runs": "int", "warnings": ["str"], "changed_during_backup": "bool",
        "skipped_free_bytes": "int", "unchanged_from": "str?", "reading": "obj", "suspicious": "obj?",
        "protected_snapshot": "str?"}},
    "snapshots": {"snapshots": {"snapshots": [{"id": "str", "short_id": "str", "host": "str", "source": "str",
                                                "status?": "str"}]}},
    "restore": {"restore": {
        "snapshot_id": "str", "target": "str", "size": "int", "partition": "int?", "written_bytes": "int",
        "zero_bytes": "int", "fetched_bytes": "int?", "duration_s": "num", "damaged_ranges": [["int"]],
        "disk_size": "int", "format": "str", "gpt_moved": "bool", "grown_partition": "int?",
        "reused_bytes": "int", "resumed_bytes": "int", "verified_bytes": "int", "held_snapshot": "str?",
        "shared_bytes": "int", "direct_bytes": "int", "processes": "int"}},
    "ls": {"ls": [
        {"snapshot_id": "str", "partition": "int?", "filesystem": "str", "path": "str", "entries": [_ENTRY],
         "fetched_bytes": "int"},
        {"snapshot_id": "str", "size": "int", "scheme": "str?", "partitions": ["obj"], "fetched_bytes": "int"}]},
    "extract": {"extract": {"snapshot_id": "str", "partition": "int?", "path": "str", "to": "str", "files": "int",
                            "dirs": "int", "symlinks": "int", "bytes": "int", "failed": "arr",
                            "fetched_bytes": "int"}},
    "check": {"check": {"ok": "bool", "snapshots": "int", "packs": "int", "packs_read": "int", "chunks": "int",
                        "errors": ["str"], "warnings": ["str"], "damaged_packs": "obj",
                        "affected_snapshots": "obj"}},
    "forget": {"forget": {"keep": ["str"], "remove": ["str"], "dry_run": "bool", "reasons": "obj",
                          "prune": "obj?"}},
    "prune": {"prune": {
        "packs_before": "int", "packs_deleted": "int", "packs_repacked": "int", "packs_written": "int",
        "bytes_freed": "int", "stored_before": "int", "stored_after": "int", "bytes_written": "int",
        "unused_before": "int", "unused_after": "int", "leftovers": "int", "leftover_bytes": "int",
        "stale_locks": "int", "held_packs": "int", "held_bytes": "int", "held_until": "time?", "dry_run": "bool",
        "warnings": ["str"], "requests": "obj"}},
    "retain": {"retain": {"until": "time?", "held_until": "time?", "next_due": "time?", "requests": "obj"}},
    "stats": {"stats": {"snapshots": "int", "packs": "int", "stored_bytes": "int", "raw_bytes": "int",
                        "logical_bytes": "int", "dedup_ratio": "num", "groups": ["obj"]}},
    "unlock": {"unlock": {"removed": "int"}},
    "doctor": {"doctor": {"url": "str", "location": "str?", "checks": [{"name": "str", "status": "str",
                                                                        "detail": "str", "hint": "str"}],
                          "ok": "bool", "failed": "str?", "error": "str?", "hint": "str?"}},
    "login": {},
    "run": {"source": _RUN_SOURCE,
            "run": {"host": "str", "repository": "str", "status": "str", "exit_code": "int", "started": "time",
                    "finished": "time", "duration_s": "num", "repository_bytes": "int?", "snapshot_count": "int?",
                    "errors": ["str"], "sources": [_RUN_SOURCE], "copies": ["obj"], "delivery_problems": ["str"]}},
    "mount": {},
    "verify": {"verify": {"snapshot_id": "str", "status": "str", "size": "int", "checked_bytes": "int",
                          "zero_bytes": "int", "damaged_bytes": "int", "damaged_ranges": "arr",
                          "partitions": "arr?", "duration_s": "num", "fetched_bytes": "int?"}},
    "status": {"status": {"generated": "time", "repository": "str", "ok": "bool", "flagged": "int",
                          "hosts": "int", "snapshots": "int", "repository_bytes": "int", "sources": ["obj"],
                          "locks": ["obj"], "storage": [{"time": "time", "stored_bytes": "int"}],
                          "damaged": "arr", "check": "obj?"}},
    "serve": {},
    "copy": {"copy": {"complete": "bool", "stopped": "str?", "mode": "str",
                      "copied": [{"source_id": "str", "target_id": "str"}], "skipped": "arr",
                      "snapshots_copied": "int", "snapshots_skipped": "int", "read_bytes": "int",
                      "uploaded_bytes": "int", "duration_s": "num", "warnings": ["str"]}},
    "ack": {"ack": [
        {"snapshot": "str", "acknowledged": "bool", "already": "bool"},
        {"suspicious": [{"snapshot": "str", "time": "time", "host": "str", "source": "str", "acknowledged": "bool",
                         "protects": "str?", "suspicious": "obj?"}]}]},
    "key add": {"key_add": {"added": "str"}},
    "key list": {"key_list": {"keys": [{"id": "str", "current": "bool", "created": "time?", "host": "str?",
                                        "user": "str?", "label": "str?", "damaged": "str?"}]}},
    "key remove": {"key_remove": {"removed": "str"}},
    "key passwd": {"key_passwd": {"key": "str"}},
    "repair index": {"repair_index": _REPAIR},
    "repair packs": {"repair_packs": _REPAIR},
    "repair snapshots": {"repair_snapshots": _REPAIR},
    "config show": {"config_show": {"config_file": "str?"}},
    "config check": {"config_check": {"config_file": "str?", "ok": "bool",
                                      "checks": [{"check": "str", "ok": "bool", "detail": "str"}]}},
    "schedule install": {"schedule_install": {"scheduler": "str", "config": "str", "at": "str",
                                              "randomized_delay_s": "int"}},
    "schedule remove": {"schedule_remove": {"removed": ["str"]}},
    "schedule status": {"schedule_status": {"installed": "bool", "scheduler": "str?", "files": ["str"],
                                            "at": "str?", "next_run": "time?", "state_file": "str",
                                            "scheduler_running": "bool", "last_run": "obj?", "state_error": "str?"}},
}
# the snapshots listing: complete snapshots carry the snapshot's fields, `--all` adds run records
COMMANDS["snapshots"]["snapshots"] = {"snapshots": [{"anyOf": [_SNAPSHOT, _RUN_RECORD]}]}


def _type(spec: Any) -> dict:
    if isinstance(spec, dict) and set(spec) == {"anyOf"}:
        return {"anyOf": [_type(s) for s in spec["anyOf"]]}
    if isinstance(spec, dict):
        return _object(spec)
    if isinstance(spec, list):
        return {"type": "array", "items": _type(spec[0])}
    nullable = spec.endswith("?")
    name = spec.rstrip("?")
    if name == "time":
        out: dict = {"type": "string", "format": "date-time", "pattern": TIME_PATTERN}
    else:
        out = {"type": {"str": "string", "int": "integer", "num": "number", "bool": "boolean", "obj": "object",
                        "arr": "array"}[name]}
    if nullable:
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _object(fields: Spec, event: str | None = None) -> dict:
    props = {k.rstrip("?"): _type(v) for k, v in fields.items()}
    required = [k for k in fields if not k.endswith("?")]
    if event is not None:
        props = {"event": {"const": event}, **props}
        required = ["event", *required]
    return {"type": "object", "properties": props, "required": required}


def _event(name: str, spec: Spec | list[Spec]) -> dict:
    if isinstance(spec, list):
        return {"title": name, "anyOf": [_object(s, name) for s in spec]}
    return {"title": name, **_object(spec, name)}


def schemas() -> dict[str, dict]:
    """Per command (`key list`), the schema one stdout line of `agent key list --json` must match."""
    out = {}
    for command, events in COMMANDS.items():
        name = command.replace(" ", "_")
        out[command] = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{BASE_URL}{name}.json",
            "title": f"agent {command} --json",
            "description": "One line of output: an object whose `event` says which of these it is (docs/json.md).",
            "oneOf": [_event(e, s) for e, s in {**events, **COMMON}.items()],
        }
    return out


def render() -> dict[str, str]:
    """File name -> text, as docs/schemas/ holds them."""
    return {f"{c.replace(' ', '_')}.json": json.dumps(s, indent=2) + "\n" for c, s in schemas().items()}


def main() -> None:
    target = Path(__file__).resolve().parents[2] / "docs" / "schemas"
    target.mkdir(exist_ok=True)
    for stale in target.glob("*.json"):
        stale.unlink()
    for name, text in render().items():
        (target / name).write_text(text)


if __name__ == "__main__":
    main()
