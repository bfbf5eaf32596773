"""`agent ls` and `agent extract`: a snapshot's partitions and files, without restoring the disk."""

from __future__ import annotations

import stat
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

import typer

from agent.cli.context import JSON_HELP, AppContext, app_context
from agent.config import stamps, units

_LOCK_WAIT_HELP = "Seconds to wait for a running prune to finish."
_AT_HELP = ("Newest snapshot at or before this time (then the spec leaves out the snapshot: 2:/etc): a date, "
            "a timestamp, or yesterday / 3d / 12h.")


@contextmanager
def _opened(app: AppContext, text: str, at: Optional[str], host: Optional[str], source: Optional[str],
            command: str, lock_wait: int):
    """(spec, snapshot image, partition dict or None, filesystem or None) for `text`, inside the
    repository, under a shared lock: a prune must not delete packs while they are read."""
    from agent.browse.image import SnapshotImage, Window
    from agent.browse.paths import parse_spec

    spec = parse_spec(text, with_snapshot=at is None)
    with app.repository() as repo, repo.reader_lock(command=command, wait=lock_wait, warn=app.warn):
        from agent.config.times import parse_instant
        from agent.repo.snapshots import filter_snapshots, pick_at, pick_partition, resolve

        damaged: list[tuple[str, str]] = []
        snaps = filter_snapshots(repo.list_snapshots(damaged), host=host, source=source)
        snap = (pick_at(snaps, parse_instant(at), local_host=app.local_host) if at
                else resolve(snaps, spec.snapshot or "latest", local_host=app.local_host))
        index = repo.load_index(damaged)
        with SnapshotImage(repo, index, snap) as image:
            from agent.browse.fs import open_filesystem
            part = fs = None
            if spec.partition is not None:
                part = pick_partition(snap, spec.partition)
                where = f"snapshot {snap.id[:8]} partition {part['number']}"
                fs = open_filesystem(Window(image, int(part["start"]), int(part["size"])), where)
            elif snap.partitions:
                if spec.path is not None:
                    from agent.errors import UsageError

                    choices = ", ".join(f"p{p.get('number')}" for p in snap.partitions)
                    raise UsageError(f"snapshot {snap.id[:8]} has partitions ({choices}): name one, e.g. "
                                     f"{spec.snapshot or 'latest'}:2:{spec.path}")
            else:  # one partition or a bare filesystem was backed up: the whole image is the filesystem
                from agent.errors import FilesystemError

                try:
                    fs = open_filesystem(Window(image, 0, snap.size), f"snapshot {snap.id[:8]}")
                except FilesystemError:
                    if spec.path is not None:
                        raise
            yield spec, image, part, fs


def ls(
    ctx: typer.Context,
    spec: str = typer.Argument(..., help="SNAPSHOT (its partitions), SNAPSHOT:PARTITION (its root) or "
                               "SNAPSHOT:PARTITION:/path. A partition is a number, filesystem label or GPT name."),
    recursive: bool = typer.Option(False, "--recursive", "-R", help="List directories recursively."),
    at: Optional[str] = typer.Option(None, "--at", help=_AT_HELP),
    host: Optional[str] = typer.Option(None, "--host", help="Choose among the snapshots of this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Choose among the snapshots of this source path."),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    lock_wait: int = typer.Option(1800, "--lock-wait", help=_LOCK_WAIT_HELP),
) -> None:
    """List a snapshot's partitions, or the files in one of them."""
    app: AppContext = app_context(ctx, json_output)
    with _opened(app, spec, at, host, source, "ls", lock_wait) as (parsed, image, part, fs):
        if fs is None:
            _partitions(app, image)
        else:
            path = parsed.path or "/"
            top = fs.stat(path)
            entries = list(fs.walk(path) if recursive else fs.listdir(path)) if top.kind == "dir" else [top]
            if app.settings.json:
                app.emit_json("ls", {"snapshot_id": image.snap.id, "partition": part["number"] if part else None,
                               "filesystem": fs.kind,
                               "path": path, "entries": [_entry_json(e) for e in entries],
                               "fetched_bytes": image.fetched_bytes})
            else:
                for e in entries:
                    app.out.print(_long(e, recursive), markup=False, highlight=False)


def _stored(reading: dict | None, part: dict) -> dict:
    """How the backup read this partition (agent.source.reading), matched by its start."""
    for r in (reading or {}).get("partitions", []):
        if r.get("start") == part.get("start"):
            return {k: r.get(k) for k in ("read", "method", "reason", "free_bytes", "excluded")}
    return {"read": "whole", "method": "", "reason": "taken before used-block reading", "free_bytes": 0,
            "excluded": []}


def _read_note(r: dict) -> str:
    what = {"used": "used blocks", "header": "swap header", "skipped": "not backed up"}.get(r["read"] or "", "whole")
    return what + (f" ({r['reason']})" if r["read"] == "whole" and r.get("reason") else "")


def _partitions(app: AppContext, image) -> None:
    parts = [{**p, "used": None if (st := _stored(image.snap.reading, p))["read"] == "skipped" else _used(image, p),
              "stored": st} for p in image.snap.partitions]
    if app.settings.json:
        app.emit_json("ls", {"snapshot_id": image.snap.id, "size": image.snap.size,
                       "scheme": (image.snap.partition_table or {}).get("scheme"), "partitions": parts,
                       "fetched_bytes": image.fetched_bytes})
        return
    if not parts:
        app.out.print(f"snapshot {image.snap.id[:8]} has no partition table: {units.size(image.snap.size)} image")
        return
    for p in parts:
        label = " ".join(f"{x!r}" for x in dict.fromkeys(v for v in (p.get("fs_label"), p.get("name")) if v))
        used = "?" if p["used"] is None else units.size(p["used"])
        app.out.print(f"p{p.get('number')}  {units.size(int(p.get('size', 0))):>10}  used {used:>10}  "
                      f"at {int(p.get('start', 0))}  {p.get('type_name') or ''}  {p.get('filesystem') or '-'}  "
                      f"{label}  [{_read_note(p['stored'])}]".rstrip(), markup=False, highlight=False)


def _used(image, part: dict) -> int | None:
    """The partition filesystem's own count of bytes in use; None when it cannot be read."""
    from agent.browse.fs import open_filesystem
    from agent.browse.image import Window
    from agent.errors import AgentError

    try:
        fs = open_filesystem(Window(image, int(part["start"]), int(part["size"])), f"partition {part['number']}")
        return fs.used()
    except AgentError:
        return None


def _entry_json(e) -> dict:
    return {"path": e.path, "name": e.name, "type": e.kind, "size": e.size, "mode": f"{e.mode:04o}", "uid": e.uid,
            "gid": e.gid, "mtime": stamps.rfc3339(datetime.fromtimestamp(e.mtime, UTC), fraction=True),
            "target": e.target}


def _long(e, full: bool) -> str:
    kind = {"dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "file": stat.S_IFREG}.get(e.kind, 0)
    when = stamps.human(datetime.fromtimestamp(e.mtime, UTC))
    name = e.path if full else e.name
    return (f"{stat.filemode(kind | e.mode)} {e.uid:>5} {e.gid:>5} {e.size:>12} {when} {name}"
            + (f" -> {e.target}" if e.target else ""))


def extract(
    ctx: typer.Context,
    spec: str = typer.Argument(..., help="SNAPSHOT:PARTITION:/path (with --at: PARTITION:/path): a file, symlink "
                               "or directory (recursively)."),
    to: Path = typer.Option(..., "--to", help="Directory to extract into (created if missing)."),
    at: Optional[str] = typer.Option(None, "--at", help=_AT_HELP),
    host: Optional[str] = typer.Option(None, "--host", help="Choose among the snapshots of this host."),
    source: Optional[str] = typer.Option(None, "--source", help="Choose among the snapshots of this source path."),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
    lock_wait: int = typer.Option(1800, "--lock-wait", help=_LOCK_WAIT_HELP),
) -> None:
    """Copy files or a directory tree out of a snapshot, keeping mode, mtime, symlinks and holes."""
    from agent.browse.extract import extract as run_extract
    from agent.errors import UsageError

    app: AppContext = app_context(ctx, json_output)
    with _opened(app, spec, at, host, source, "extract", lock_wait) as (parsed, image, part, fs):
        if fs is None or parsed.path is None:  # a partition listing, or a partition's root not asked for
            raise UsageError(f"{spec!r} names no path: give SNAPSHOT:PARTITION:/path, e.g. latest:2:/etc")
        res = run_extract(fs, parsed.path, to)
    if app.settings.json:
        app.emit_json("extract", {"snapshot_id": image.snap.id, "partition": part["number"] if part else None,
                       "path": parsed.path,
                       "to": str(to), "files": res.files, "dirs": res.dirs, "symlinks": res.symlinks,
                       "bytes": res.bytes, "failed": res.failed, "fetched_bytes": image.fetched_bytes})
    else:
        app.out.print(f"extracted {res.files} file(s), {res.dirs} dir(s), {res.symlinks} symlink(s), "
                      f"{units.size(res.bytes)} to {to} (fetched {units.size(image.fetched_bytes)})")
        for f in res.failed:
            app.warn(f"not extracted: {f}")
    if res.failed:
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("ls")(ls)
    app.command("extract")(extract)


